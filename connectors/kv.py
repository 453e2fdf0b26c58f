"""A small key/value store with expiry on the conversation database, shared by every gateway process.

Used where replicas must agree: "was this WeChat MsgId seen already?" (add_once) and cached API tokens.
The database is the one shared thing every replica already has (SQLite for one machine, PostgreSQL for many),
so no extra service is needed."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Optional

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from .store import KV as Row
from .store import utcnow


def as_utc(value: Optional[datetime]) -> Optional[datetime]:
    """SQLite hands timestamps back without a zone; they were written in UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=timezone.utc)


def _expiry(ttl_s: Optional[float]) -> Optional[datetime]:
    return None if ttl_s is None else utcnow() + timedelta(seconds=ttl_s)


class KV:
    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.factory = factory

    def add_once(self, key: str, ttl_s: float) -> bool:
        """True for the first caller (across processes) until the key expires; False for every repeat."""
        with self.factory() as session:
            with session.begin():
                session.execute(delete(Row).where(Row.key == key, Row.expires_at < utcnow()))
            try:
                with session.begin():
                    session.add(Row(key=key, value=True, expires_at=_expiry(ttl_s)))
            except IntegrityError:
                return False
        return True

    def get(self, key: str) -> Any:
        with self.factory() as session:
            row = session.get(Row, key)
            if row is None:
                return None
            expires = as_utc(row.expires_at)
            if expires is not None and expires < utcnow():
                return None
            return row.value

    def set(self, key: str, value: Any, ttl_s: Optional[float] = None) -> None:
        """Insert or replace (an upsert: two processes setting a missing key at once both succeed)."""
        for attempt in range(3):
            try:
                with self.factory() as session, session.begin():
                    row = session.get(Row, key)
                    if row is None:
                        session.add(Row(key=key, value=value, expires_at=_expiry(ttl_s)))
                    else:
                        row.value, row.expires_at = value, _expiry(ttl_s)
                return
            except IntegrityError:
                if attempt == 2:
                    raise

    def take(self, key: str) -> Any:
        """Read and delete in one step (None if absent or expired): only one caller gets the value."""
        with self.factory() as session, session.begin():
            value = session.scalar(delete(Row).where(Row.key == key).returning(Row.value))
            return value

    def delete(self, key: str) -> None:
        with self.factory() as session, session.begin():
            session.execute(delete(Row).where(Row.key == key))

    def purge(self) -> int:
        """Drop expired keys (called now and then by the gateway)."""
        with self.factory() as session, session.begin():
            rows = session.scalars(select(Row.key).where(Row.expires_at < utcnow())).all()
            session.execute(delete(Row).where(Row.key.in_(rows)))
            return len(rows)
