"""SQLAlchemy 2 models for the conversation store (DESIGN §4 Storage).

Only portable types are used (String with lengths, JSON, DateTime(timezone=True)) so the same models and
migrations run on SQLite (default) and PostgreSQL (production). States are plain strings guarded by CHECK
constraints instead of native ENUMs: adding a state later is then a constraint change, not a type migration,
and SQLite has no ENUM type anyway.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Fixed constraint names keep the migration and the models identical on both backends (and let later
# migrations drop constraints by name, which SQLite batch mode needs).
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

CONVERSATION_STATES = ("bot", "pending", "open", "snoozed", "resolved")
TICKET_STATES = ("pending", "open", "snoozed", "resolved")
# internal: a clerk's note on the case, never sent to the citizen
DIRECTIONS = ("inbound", "outbound", "internal")
SENDER_KINDS = ("citizen", "bot", "clerk", "system")
CLERK_ROLES = ("clerk", "admin")
CANDIDATE_STATES = ("draft", "approved", "rejected")


def utcnow() -> datetime:
    """Timestamps are set in Python (not server defaults) so both backends store the same values."""
    return datetime.now(timezone.utc)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Conversation(Base):
    __tablename__ = "conversations"
    # One conversation per channel identity: a citizen coming back continues it (and concurrent first messages
    # cannot create two).
    __table_args__ = (
        CheckConstraint(_in("state", CONVERSATION_STATES), name="state"),
        UniqueConstraint("channel", "user_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The conversation's id at Rasa (REST sender, tracker). Random rather than `id`, so two stores (a reset
    # database, a second deployment) sharing one Rasa tracker store never continue each other's conversations.
    sender: Mapped[str] = mapped_column(String(64), unique=True, default=lambda: uuid.uuid4().hex)
    channel: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str] = mapped_column(String(128), index=True)
    region: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default="bot")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    messages: Mapped[list[Message]] = relationship(back_populates="conversation", order_by="Message.id")
    tickets: Mapped[list[Ticket]] = relationship(back_populates="conversation")


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        CheckConstraint(_in("direction", DIRECTIONS), name="direction"),
        CheckConstraint(_in("sender_kind", SENDER_KINDS), name="sender_kind"),
        # Transcripts are read per conversation in insertion order.
        Index("ix_messages_conversation_id_id", "conversation_id", "id"),
        # A channel's own message id (WeChat MsgId): a retried delivery cannot be stored twice.
        UniqueConstraint("conversation_id", "external_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"))
    direction: Mapped[str] = mapped_column(String(8))
    sender_kind: Mapped[str] = mapped_column(String(8))
    text: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    external_id: Mapped[str | None] = mapped_column(String(128))
    clerk_id: Mapped[int | None] = mapped_column(ForeignKey("clerks.id"))
    # False: an outbound push the channel could not deliver yet; sent with the citizen's next message.
    delivered: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    conversation: Mapped[Conversation] = relationship(back_populates="messages")
    clerk: Mapped[Clerk | None] = relationship()


class Clerk(Base):
    __tablename__ = "clerks"
    __table_args__ = (CheckConstraint(_in("role", CLERK_ROLES), name="role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(8), default="clerk")
    department: Mapped[str | None] = mapped_column(String(128))
    display_name: Mapped[str | None] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


ACTIVE = "status IN ('pending', 'open', 'snoozed')"


class Ticket(Base):
    __tablename__ = "tickets"
    __table_args__ = (
        CheckConstraint(_in("status", TICKET_STATES), name="status"),
        # At most one active ticket per conversation, even with several gateway processes opening at once.
        Index("uq_tickets_active_conversation", "conversation_id", unique=True,
              sqlite_where=text(ACTIVE), postgresql_where=text(ACTIVE)),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    reason: Mapped[str | None] = mapped_column(String(64))
    service: Mapped[str | None] = mapped_column(String(128))
    aspect: Mapped[str | None] = mapped_column(String(64))
    candidates: Mapped[list[Any] | None] = mapped_column(JSON)
    confidence: Mapped[float | None] = mapped_column(Float)
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("clerks.id"))
    department: Mapped[str | None] = mapped_column(String(128))
    opened_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    first_response_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    snoozed_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    conversation: Mapped[Conversation] = relationship(back_populates="tickets")
    assignee: Mapped[Clerk | None] = relationship()


class Rating(Base):
    __tablename__ = "ratings"
    __table_args__ = (CheckConstraint("score BETWEEN 1 AND 5", name="score"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"), index=True)
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    score: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class KnowledgeCandidate(Base):
    __tablename__ = "knowledge_candidates"
    __table_args__ = (CheckConstraint(_in("status", CANDIDATE_STATES), name="status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    questions: Mapped[list[Any]] = mapped_column(JSON)
    answer: Mapped[str] = mapped_column(Text)
    service: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), default="draft")
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    faq_id: Mapped[str | None] = mapped_column(String(128))  # the FAQ entry id written on approval
    created_by: Mapped[int | None] = mapped_column(ForeignKey("clerks.id"))
    reviewed_by: Mapped[int | None] = mapped_column(ForeignKey("clerks.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AuditLog(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Free text rather than a clerk FK: the log must outlive deleted accounts and also record system actors.
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(128))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class KV(Base):
    """Small shared values with an expiry: channel dedup keys, cached API tokens (shared by gateway replicas)."""

    __tablename__ = "kv"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[Any | None] = mapped_column(JSON)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
