"""Conversation store (DESIGN §4 Storage): SQLAlchemy 2 models, engine/session helpers and Alembic migrations.
SQLite by default, PostgreSQL in production, same code."""

from .db import make_engine, open_database, session_factory, transaction
from .migrate import alembic_config, upgrade
from .models import (
    CANDIDATE_STATES,
    CLERK_ROLES,
    CONVERSATION_STATES,
    DIRECTIONS,
    KV,
    SENDER_KINDS,
    TICKET_STATES,
    AuditLog,
    Base,
    Clerk,
    Conversation,
    KnowledgeCandidate,
    Message,
    Rating,
    Ticket,
    utcnow,
)

__all__ = [
    "CANDIDATE_STATES",
    "CLERK_ROLES",
    "CONVERSATION_STATES",
    "DIRECTIONS",
    "SENDER_KINDS",
    "TICKET_STATES",
    "AuditLog",
    "Base",
    "Clerk",
    "KV",
    "Conversation",
    "KnowledgeCandidate",
    "Message",
    "Rating",
    "Ticket",
    "alembic_config",
    "make_engine",
    "open_database",
    "session_factory",
    "transaction",
    "upgrade",
    "utcnow",
]
