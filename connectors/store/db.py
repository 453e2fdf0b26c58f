"""Engine, session factory and a whole-or-nothing transaction helper.

The URL is always a parameter (settings own the default), so tests and the gateway can point the same code at
SQLite or PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import URL, Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # SQLite ignores foreign keys unless asked, per connection; PostgreSQL always enforces them.
    # WAL + a busy timeout: the gateway's threads (and a second gateway process) read while one writes.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.close()


def make_engine(url: str | URL, **kwargs: Any) -> Engine:
    """Create an engine; for SQLite, turn on foreign-key enforcement on every new connection."""
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def open_database(url: str) -> tuple[Engine, sessionmaker[Session]]:
    """Engine + session factory for the gateway, with the schema migrated to the newest revision."""
    from .migrate import upgrade

    if url.startswith("sqlite:///"):
        from pathlib import Path

        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    # hide_parameters: error messages must not quote citizens' text (PII) into logs.
    engine = make_engine(url, pool_pre_ping=True, hide_parameters=True)
    upgrade(engine)
    return engine, session_factory(engine)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    # expire_on_commit=False: objects stay readable after the transaction, e.g. to serialise an API response.
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """Yield a session whose work is committed as a whole on success and rolled back on any error."""
    with factory() as session, session.begin():
        yield session
