"""Storage layer (connectors/store) on SQLite and PostgreSQL: migrations match the models, writes are
transactional, constraints and foreign keys hold on both backends."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, func, inspect, select, text
from sqlalchemy.exc import IntegrityError, OperationalError

from connectors.store import (
    Base,
    Clerk,
    Conversation,
    Message,
    Rating,
    Ticket,
    make_engine,
    session_factory,
    transaction,
    upgrade,
)

PG_HOST = "127.0.0.1:5432/test"
PG_USERS = ("postgres", "root")  # trust auth; the superuser name depends on how the server was set up


def _pg_admin() -> Engine | None:
    for user in PG_USERS:
        engine = make_engine(f"postgresql+psycopg://{user}@{PG_HOST}", connect_args={"connect_timeout": 3})
        try:
            with engine.connect() as conn:
                conn.execute(text("select 1"))
            return engine
        except OperationalError:
            engine.dispose()
    return None


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path) -> Iterator[Engine]:  # type: ignore[no-untyped-def]
    """An empty database per test: a fresh SQLite file, or a throw-away PostgreSQL schema."""
    if request.param == "sqlite":
        eng = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
        yield eng
        eng.dispose()
        return
    admin = _pg_admin()
    if admin is None:
        # .ci/run starts PostgreSQL when it is down: an unreachable server is a failure, never a silent skip
        pytest.fail(f"PostgreSQL not reachable at {PG_HOST} as {' or '.join(PG_USERS)}")
    schema = f"govbot_test_{secrets.token_hex(6)}"
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    # search_path isolates this run: tables and alembic_version land in the private schema.
    eng = make_engine(admin.url, connect_args={"options": f"-csearch_path={schema}"})
    try:
        yield eng
    finally:
        eng.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def factory(engine: Engine):  # type: ignore[no-untyped-def]
    upgrade(engine)
    return session_factory(engine)


def test_migration_creates_schema_equal_to_models(engine: Engine) -> None:
    assert not set(inspect(engine).get_table_names()) & set(Base.metadata.tables)
    upgrade(engine)
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == "0001"
        diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diffs == []
    upgrade(engine)  # already at head: a no-op, not an error


def test_conversation_messages_ticket_rating_roundtrip(factory) -> None:  # type: ignore[no-untyped-def]
    with transaction(factory) as s:
        clerk = Clerk(username="wang", password_hash="x", role="clerk", department="市场监管局")
        conv = Conversation(channel="widget", user_id="u1", region="杭州")
        conv.messages = [
            Message(direction="inbound", sender_kind="citizen", text="营业执照怎么办?"),
            Message(direction="outbound", sender_kind="bot", text="请提供……", payload={"service": "yyzz", "confidence": 0.4}),
        ]
        s.add_all([clerk, conv])
        s.flush()
        s.add(Ticket(conversation=conv, reason="low_confidence", service="yyzz", aspect="materials",
                     candidates=[{"doc": "yyzz", "score": 0.4}], confidence=0.4, assignee=clerk))
        s.add(Rating(conversation_id=conv.id, message_id=conv.messages[1].id, score=5))
        conv_id = conv.id

    with factory() as s:
        conv = s.get_one(Conversation, conv_id)
        assert conv.state == "bot"
        assert [m.sender_kind for m in conv.messages] == ["citizen", "bot"]
        assert conv.messages[1].payload == {"service": "yyzz", "confidence": 0.4}
        (ticket,) = conv.tickets
        assert ticket.status == "pending" and ticket.candidates == [{"doc": "yyzz", "score": 0.4}]
        assert ticket.assignee is not None and ticket.assignee.username == "wang"
        assert ticket.opened_at is not None and ticket.resolved_at is None
        assert s.scalar(select(Rating.score).where(Rating.conversation_id == conv_id)) == 5


def test_failed_transaction_writes_nothing(factory) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(IntegrityError), transaction(factory) as s:
        conv = Conversation(channel="wechat", user_id="u2")
        s.add(conv)
        s.flush()  # the conversation row exists inside the transaction ...
        s.add(Message(conversation_id=conv.id, direction="inbound", sender_kind="citizen", text="你好"))
        s.add(Rating(conversation_id=conv.id, score=6))  # ... and this fails half-way
        s.flush()
    with pytest.raises(RuntimeError), transaction(factory) as s:
        s.add(Conversation(channel="wechat", user_id="u3"))
        s.flush()
        raise RuntimeError("application error after a write")
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(Conversation)) == 0
        assert s.scalar(select(func.count()).select_from(Message)) == 0


@pytest.mark.parametrize("score", [0, 6])
def test_rating_score_check_constraint(factory, score: int) -> None:  # type: ignore[no-untyped-def]
    with transaction(factory) as s:
        conv = Conversation(channel="widget", user_id="u4")
        s.add(conv)
    with pytest.raises(IntegrityError), transaction(factory) as s:
        s.add(Rating(conversation_id=conv.id, score=score))


def test_state_check_constraint(factory) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(IntegrityError), transaction(factory) as s:
        s.add(Conversation(channel="widget", user_id="u5", state="lost"))


def test_foreign_keys_enforced(factory) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(IntegrityError), transaction(factory) as s:
        s.add(Message(conversation_id=424242, direction="inbound", sender_kind="citizen", text="orphan"))
    with pytest.raises(IntegrityError), transaction(factory) as s:
        conv = Conversation(channel="widget", user_id="u6")
        s.add(conv)
        s.flush()
        s.add(Ticket(conversation_id=conv.id, assignee_id=424242))
