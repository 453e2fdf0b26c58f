"""`python -m bot.rasa_launch run …` (in .venv-rasa) = `rasa run …` with two measured per-turn fixes.

py-spy on `rasa run` under load (bench/README.md, "Rasa + action server serving") showed where a REST turn's CPU goes:
1. ~45 % in `RemoteAction._validate_action_result`: Rasa 3.6 calls `jsonschema.validate(result, schema)` for every
   action-server answer, and `jsonschema.validate` first re-checks the (constant) schema against the draft
   2020-12 meta-schema — that check, not the validation, is the cost (jsonschema 4.17). Here the validator is built
   and the schema checked once; every answer is still validated against the same schema, and an invalid one still
   raises Rasa's own error (the original method runs for it).
2. ~10 % in SQLite's commit (fsync of the rollback journal) when saving the tracker, and ~6 % closing the
   connection: SQLAlchemy 1.4 gives file SQLite databases a NullPool, so every tracker load and save opens and closes
   a connection. For SQLite tracker stores the connection is set to WAL with synchronous=NORMAL (a crash of the
   process loses nothing, a power cut may lose the last turns) and kept open per thread (SingletonThreadPool; Rasa
   touches the tracker store from its event-loop thread). PostgreSQL (production) is not touched.
Set GOVBOT_RASA_PATCHES=0 to run plain `rasa`. Nothing else changes; the arguments are rasa's.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

logger = logging.getLogger("govbot.rasa_launch")


def patch_action_validation() -> None:
    from jsonschema.exceptions import best_match
    from jsonschema.validators import validator_for
    from rasa.core.actions.action import RemoteAction

    schema = RemoteAction.action_response_format_spec()
    cls = validator_for(schema)
    cls.check_schema(schema)
    validator = cls(schema)
    original = RemoteAction._validate_action_result

    def _validate_action_result(self: RemoteAction, result: dict[str, Any]) -> bool:
        if best_match(validator.iter_errors(result)) is None:
            return True
        return bool(original(self, result))  # raises Rasa's ValidationError with its message

    RemoteAction._validate_action_result = _validate_action_result  # type: ignore[method-assign]


def tune_sqlite() -> None:
    import sqlalchemy
    from sqlalchemy import event
    from sqlalchemy.engine import Engine, make_url
    from sqlalchemy.pool import SingletonThreadPool

    create_engine = sqlalchemy.create_engine

    def create_engine_keeping_sqlite_open(url: Any, *args: Any, **kwargs: Any) -> Any:
        if make_url(url).drivername.startswith("sqlite") and "poolclass" not in kwargs:
            kwargs["poolclass"] = SingletonThreadPool
        return create_engine(url, *args, **kwargs)

    sqlalchemy.create_engine = create_engine_keeping_sqlite_open  # rasa.core.tracker_store calls sa.create_engine

    @event.listens_for(Engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        if type(dbapi_connection).__module__.startswith(("sqlite3", "pysqlite2")):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()


def main(argv: list[str]) -> None:
    os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")
    if os.environ.get("GOVBOT_RASA_PATCHES", "1") != "0":
        patch_action_validation()
        tune_sqlite()
        print("govbot: rasa with cached action-response validation and SQLite WAL (bot/rasa_launch.py)",
              file=sys.stderr, flush=True)
    from rasa.__main__ import main as rasa_main

    sys.argv = ["rasa", *argv]
    rasa_main()


if __name__ == "__main__":
    main(sys.argv[1:])
