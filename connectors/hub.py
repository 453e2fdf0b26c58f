"""The conversation hub (DESIGN §3): every channel hands citizen messages here; every reply leaves from here.

Order of work for one inbound message, each step its own transaction so a crash loses nothing:
1. store the message (a repeat of a channel message id is recognised and not processed again);
2. with a clerk (pending/open/snoozed) → publish to the desk; otherwise → Rasa's REST channel;
3. store the bot's messages; a handoff payload opens a ticket; Rasa failing opens one too (「系统繁忙」).
Pushes (clerk replies, status changes) are stored as undelivered first and marked delivered once the channel took
them; what a channel could not deliver goes out with the citizen's next message."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Optional

import anyio
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from .events import EventBus
from .kv import as_utc
from .metrics import Metrics
from .office_hours import OfficeHours
from .pii import mask
from .rasa_client import BotUnavailable, RasaClient
from .store import Conversation, Message, Rating, Ticket, utcnow

log = logging.getLogger("govbot.hub")

ACTIVE_TICKET = ("pending", "open", "snoozed")
WITH_CLERK = ("pending", "open", "snoozed")
BUSY_TEXT = "系统繁忙，智能助手暂时无法回答。您的问题已记录并转给人工客服，工作人员会尽快在这里回复您。"
BOT_GOOD, BOT_BAD = 4, 2  # the bot's 好评/差评 words on the five-level 好差评 scale


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clean_text(text: str) -> str:
    """Control characters out (PostgreSQL refuses NUL in text; none of them is meant), whitespace trimmed."""
    return _CONTROL.sub("", text or "").strip()


@dataclass(frozen=True)
class Inbound:
    channel: str
    user_id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    external_id: Optional[str] = None


@dataclass(frozen=True)
class Outbound:
    id: int
    conversation_id: int
    sender_kind: str
    text: Optional[str]
    buttons: list[dict[str, Any]]
    custom: Optional[dict[str, Any]]
    created_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "conversation_id": self.conversation_id, "sender_kind": self.sender_kind,
                "text": self.text, "buttons": self.buttons, "custom": self.custom,
                "created_at": as_utc(self.created_at).isoformat()}  # type: ignore[union-attr]


@dataclass(frozen=True)
class ConversationRef:
    id: int
    channel: str
    user_id: str


Deliver = Callable[[ConversationRef, list[Outbound]], Awaitable[bool]]


def outbound_of(m: Message) -> Outbound:
    payload = m.payload or {}
    return Outbound(m.id, m.conversation_id, m.sender_kind, m.text, list(payload.get("buttons") or []),
                    payload.get("custom"), m.created_at)


def message_view(m: Message) -> dict[str, Any]:
    """A message as the desk shows it (unmasked: the clerk handling the case needs the numbers)."""
    view = outbound_of(m).as_dict()
    view["direction"] = m.direction
    view["clerk"] = m.clerk.display_name or m.clerk.username if m.clerk is not None else None
    return view


class Hub:
    def __init__(self, factory: sessionmaker[Session], rasa: RasaClient, bus: EventBus, metrics: Metrics,
                 office: OfficeHours, *, max_text_chars: int = 1000, sla_minutes: int = 10,
                 service_info: Optional[Callable[[str], tuple[str, str]]] = None) -> None:
        self.factory = factory
        self.rasa = rasa
        self.bus = bus
        self.metrics = metrics
        self.office = office
        self.max_text_chars = max_text_chars
        self.sla_minutes = sla_minutes
        self.service_info = service_info  # guide id → (name, department), for tickets
        self.channels: dict[str, Deliver] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    # -- plumbing ------------------------------------------------------------------------------------------------------
    async def tx(self, fn: Callable[[Session], Any]) -> Any:
        """Run `fn(session)` in a worker thread, as one transaction."""
        def run() -> Any:
            with self.factory() as session:
                with session.begin():
                    result = fn(session)
                for event in session.info.pop("events", []):
                    self.bus.publish(event)
            return result
        return await anyio.to_thread.run_sync(run)

    def _service(self, service: Optional[str]) -> tuple[Optional[str], Optional[str]]:
        """(name, department) of a guide id; (None, None) when unknown."""
        if not service or self.service_info is None:
            return None, None
        try:
            name, department = self.service_info(service)
        except KeyError:
            return None, None
        return name or None, department or None

    def register_channel(self, channel: str, deliver: Deliver) -> None:
        self.channels[channel] = deliver

    def _lock(self, channel: str, user_id: str) -> asyncio.Lock:
        # One turn at a time per citizen: Rasa's tracker and the "with a clerk?" decision need the order kept.
        key = (channel, user_id)
        lock = self._locks.get(key)
        if lock is None:
            if len(self._locks) > 10000:
                self._locks = {k: v for k, v in self._locks.items() if v.locked()}
            lock = self._locks[key] = asyncio.Lock()
        return lock

    @staticmethod
    def _find(s: Session, channel: str, user_id: str) -> Optional[Conversation]:
        return s.scalar(select(Conversation).where(Conversation.channel == channel, Conversation.user_id == user_id))

    def _conversation(self, s: Session, channel: str, user_id: str, region: Optional[str]) -> Conversation:
        conv = self._find(s, channel, user_id)
        if conv is None:
            try:
                with s.begin_nested():
                    conv = Conversation(channel=channel, user_id=user_id, region=region, state="bot")
                    s.add(conv)
            except IntegrityError:  # another process created it a moment ago
                conv = self._find(s, channel, user_id)
                assert conv is not None
        elif region and conv.region != region:
            conv.region = region
        return conv

    def _store(self, s: Session, conv: Conversation, direction: str, sender_kind: str, text: Optional[str],
               payload: Optional[dict[str, Any]] = None, *, delivered: bool = True,
               clerk_id: Optional[int] = None, external_id: Optional[str] = None) -> Message:
        msg = Message(conversation_id=conv.id, direction=direction, sender_kind=sender_kind, text=text,
                      payload=payload, delivered=delivered, clerk_id=clerk_id, external_id=external_id)
        s.add(msg)
        conv.updated_at = utcnow()
        s.flush()
        self.metrics.messages.labels(conv.channel, direction, sender_kind).inc()
        return msg

    @staticmethod
    def _emit(s: Session, event: dict[str, Any]) -> None:
        """Queue a live event; `tx` publishes it once the transaction committed (never a rolled-back state)."""
        s.info.setdefault("events", []).append(event)

    def _publish_message(self, s: Session, m: Message, ticket_id: Optional[int]) -> None:
        self._emit(s, {"type": "message", "conversation_id": m.conversation_id, "ticket_id": ticket_id,
                          "message": message_view(m)})

    def publish_ticket(self, s: Session, view: dict[str, Any]) -> None:
        self._emit(s, {"type": "ticket", "ticket": view})

    # -- inbound -------------------------------------------------------------------------------------------------------
    def check_text(self, text: str) -> str:
        text = clean_text(text)
        if not text:
            raise ValueError("消息不能为空 / message must not be empty")
        if len(text) > self.max_text_chars:
            raise ValueError(f"消息太长（{len(text)} 字），请不超过 {self.max_text_chars} 字 / message too long")
        return text

    async def receive(self, msg: Inbound) -> list[Outbound]:
        text = self.check_text(msg.text)
        region = msg.metadata.get("region") if isinstance(msg.metadata.get("region"), str) else None
        async with self._lock(msg.channel, msg.user_id):
            started = time.perf_counter()

            def store_inbound(s: Session) -> Optional[tuple[int, str, str, bool, int, list[Outbound],
                                                            Optional[int]]]:
                conv = self._conversation(s, msg.channel, msg.user_id, region)
                if msg.external_id and s.scalar(select(Message.id).where(
                        Message.conversation_id == conv.id, Message.external_id == msg.external_id)):
                    return None  # a channel retry of a message already taken in
                resume = conv.state == "resolved"
                if resume:
                    conv.state = "bot"  # the case was closed: the next message goes to the bot again
                routed = "desk" if conv.state in WITH_CLERK else "bot"
                m = self._store(s, conv, "inbound", "citizen", text,
                                {"routed": routed, **({"metadata": msg.metadata} if msg.metadata else {})},
                                external_id=msg.external_id)
                pending = self._claim_undelivered(s, Message.conversation_id == conv.id)
                ticket = self._active_ticket(s, conv.id)
                if ticket is not None and ticket.status == "snoozed":
                    ticket.status, ticket.snoozed_until = "open", None  # the citizen answered: back in the queue
                    conv.state = "open"
                self._publish_message(s, m, ticket.id if ticket else None)
                if ticket is not None:
                    self.publish_ticket(s, self.ticket_view(s, ticket))
                return (conv.id, conv.sender, conv.state, resume, m.id, [outbound_of(p) for p in pending],
                        ticket.id if ticket else None)

            try:
                stored = await self.tx(store_inbound)
            except IntegrityError:
                stored = None  # the same external id stored concurrently by another process
            if stored is None:
                return []
            conv_id, sender, state, resume, inbound_id, pending, ticket_id = stored
            if state in WITH_CLERK:
                return pending + await self._desk_ack(conv_id, state)
            if resume:  # resolved without a hand-back: Rasa still holds the conversation paused
                with contextlib.suppress(BotUnavailable):  # if Rasa is down, the turn below says so
                    await self.rasa.hand_back(sender)
            replies = await self._ask_bot(conv_id, sender, msg, text, inbound_id)
            self.metrics.latency.labels(msg.channel).observe(time.perf_counter() - started)
            return pending + replies

    async def _desk_ack(self, conv_id: int, state: str) -> list[Outbound]:
        """While waiting for a clerk, tell the citizen once where they stand; a clerk who holds it answers live."""
        if state != "pending":
            return []

        def last_outbound(s: Session) -> Optional[str]:
            return s.scalar(select(Message.sender_kind).where(Message.conversation_id == conv_id,
                                                              Message.direction == "outbound")
                            .order_by(Message.id.desc()).limit(1))
        if await self.tx(last_outbound) == "system":
            return []
        return [await self.system_message(conv_id, None, deliver=False)]

    async def _ask_bot(self, conv_id: int, sender: str, msg: Inbound, text: str, inbound_id: int) -> list[Outbound]:
        metadata = {**msg.metadata, "channel": msg.channel}
        try:
            bot_messages = await self.rasa.send(sender, text, metadata)
        except BotUnavailable as exc:
            log.warning("bot unavailable for conversation %s: %s", conv_id, exc)
            self.metrics.bot_failures.inc()
            busy = await self.open_ticket(conv_id, {"reason": "bot_unavailable"}, busy_text=BUSY_TEXT, priority=1)
            return busy

        def store_replies(s: Session) -> tuple[list[Outbound], Optional[dict[str, Any]]]:
            conv = s.get(Conversation, conv_id)
            assert conv is not None
            out: list[Outbound] = []
            handoff: Optional[dict[str, Any]] = None
            answered = False
            for bm in bot_messages:
                custom = bm.get("custom") if isinstance(bm.get("custom"), dict) else None
                buttons = [b for b in bm.get("buttons") or [] if isinstance(b, dict)]
                payload: dict[str, Any] = {}
                if buttons:
                    payload["buttons"] = [{"title": str(b.get("title", "")), "payload": str(b.get("payload", ""))}
                                          for b in buttons]
                if custom:
                    payload["custom"] = custom
                    handoff = custom.get("handoff") if isinstance(custom.get("handoff"), dict) else handoff
                    answered = answered or "card" in custom
                    if isinstance(custom.get("rating"), dict):
                        self._store_bot_rating(s, conv, custom["rating"])
                if bm.get("image"):
                    payload["image"] = bm["image"]
                m = self._store(s, conv, "outbound", "bot", bm.get("text"), payload or None)
                self._publish_message(s, m, None)
                out.append(outbound_of(m))
            inbound = s.get(Message, inbound_id)
            if inbound is not None:
                inbound.payload = {**(inbound.payload or {}), "answered": answered}
            return out, handoff

        replies, handoff = await self.tx(store_replies)
        if handoff is not None:
            replies += await self.open_ticket(conv_id, handoff)
        return replies

    def _store_bot_rating(self, s: Session, conv: Conversation, rating: dict[str, Any]) -> None:
        value = rating.get("value")
        if value in ("good", "bad"):
            last = s.scalar(select(Message.id).where(Message.conversation_id == conv.id,
                                                     Message.direction == "outbound", Message.sender_kind == "bot")
                            .order_by(Message.id.desc()).limit(1))
            s.add(Rating(conversation_id=conv.id, message_id=last, score=BOT_GOOD if value == "good" else BOT_BAD))

    # -- tickets -------------------------------------------------------------------------------------------------------
    def _active_ticket(self, s: Session, conv_id: int) -> Optional[Ticket]:
        return s.scalar(select(Ticket).where(Ticket.conversation_id == conv_id, Ticket.status.in_(ACTIVE_TICKET))
                        .order_by(Ticket.id.desc()).limit(1))

    async def open_ticket(self, conv_id: int, case: dict[str, Any], *, busy_text: Optional[str] = None,
                          priority: int = 0) -> list[Outbound]:
        """Hand the conversation to the desk (or keep the open ticket); returns the messages for the citizen."""
        reason = str(case.get("reason") or "requested")
        service = case.get("service") if isinstance(case.get("service"), str) else None
        department = self._service(service)[1]

        def open_(s: Session) -> tuple[int, list[Outbound]]:
            conv = s.get(Conversation, conv_id)
            assert conv is not None
            out: list[Outbound] = []
            if busy_text:
                m = self._store(s, conv, "outbound", "system", busy_text, {"custom": {"busy": True}})
                out.append(outbound_of(m))
            ticket = self._active_ticket(s, conv_id)
            if ticket is None:
                candidates = [c for c in case.get("candidates") or [] if isinstance(c, dict)]
                confidence = case.get("confidence")
                ticket = Ticket(conversation_id=conv_id, status="pending", priority=priority, reason=reason,
                                service=service, aspect=case.get("aspect"), candidates=candidates,
                                confidence=float(confidence) if isinstance(confidence, (int, float)) else None,
                                department=department)
                s.add(ticket)
                conv.state = "pending"
                s.flush()
                self.metrics.handoffs.labels(reason).inc()
                log.info("ticket %s opened for conversation %s: %s", ticket.id, conv_id, reason)
            self.publish_ticket(s, self.ticket_view(s, ticket))
            if out:
                self._publish_message(s, s.get(Message, out[0].id), ticket.id)  # type: ignore[arg-type]
            return ticket.id, out

        try:
            ticket_id, out = await self.tx(open_)
        except IntegrityError:  # another process opened this conversation's ticket a moment ago: use that one
            ticket_id, out = await self.tx(open_)
        return out + [await self.system_message(conv_id, ticket_id, deliver=False)]

    def queue_position(self, s: Session, ticket: Ticket) -> Optional[int]:
        if ticket.status != "pending":
            return None
        ahead = s.scalar(select(func.count(Ticket.id)).where(
            Ticket.status == "pending", Ticket.assignee_id.is_(None),
            (Ticket.priority > ticket.priority)
            | ((Ticket.priority == ticket.priority) & (Ticket.opened_at < ticket.opened_at))))
        return int(ahead or 0) + 1

    def _status(self, s: Session, conv: Conversation) -> dict[str, Any]:
        ticket = self._active_ticket(s, conv.id)
        now = utcnow()
        open_now = self.office.is_open(now)
        status: dict[str, Any] = {"state": conv.state, "ticket_id": ticket.id if ticket else None,
                                  "queue_position": None, "clerk": None, "office_hours": open_now, "expected": None}
        if ticket is None:
            return status
        status["queue_position"] = self.queue_position(s, ticket)
        if ticket.assignee is not None:
            status["clerk"] = ticket.assignee.display_name or ticket.assignee.username
        if not open_now and ticket.status == "pending":
            status["expected"] = self.office.describe_next(now)
        return status

    @staticmethod
    def status_text(status: dict[str, Any]) -> str:
        state = status["state"]
        if state == "open" and status.get("clerk"):
            return f"工作人员{status['clerk']}已接入，正在为您服务。"
        if state == "snoozed":
            return "工作人员正在等待您补充信息，请直接回复。"
        if state == "bot":
            return "人工服务已结束，智能助手继续为您服务。还有其他问题可以直接问我。"
        if state == "pending":
            if status.get("expected"):
                return (f"现在是非工作时间，您的问题已记录，工作人员将于{status['expected']}起回复您，"
                        "回复会发到这里，请留意。")
            pos = status.get("queue_position")
            return f"正在为您转接人工客服…您前面还有 {pos - 1} 位，请稍候。" if pos and pos > 1 else \
                "正在为您转接人工客服…请稍候，工作人员马上回复您。"
        return ""

    async def system_message(self, conv_id: int, ticket_id: Optional[int], *, deliver: bool = True,
                             text: Optional[str] = None) -> Outbound:
        """Store a status message for the citizen (custom {"status": …}); push it unless it goes in a reply."""
        def store(s: Session) -> tuple[Outbound, ConversationRef]:
            conv = s.get(Conversation, conv_id)
            assert conv is not None
            status = self._status(s, conv)
            m = self._store(s, conv, "outbound", "system", text or self.status_text(status),
                            {"custom": {"status": status}}, delivered=not deliver)
            self._publish_message(s, m, ticket_id)
            return outbound_of(m), ConversationRef(conv.id, conv.channel, conv.user_id)

        out, ref = await self.tx(store)
        if deliver:
            await self.push(ref, [out])
        return out

    # -- outbound pushes -----------------------------------------------------------------------------------------------
    @staticmethod
    def _claim_undelivered(s: Session, where: Any) -> list[Message]:
        """Mark undelivered outbound messages delivered and return them — atomically, so a push and the citizen's
        next message (or two processes) never both send the same one."""
        ids = s.scalars(update(Message).where(where, Message.direction == "outbound", Message.delivered.is_(False))
                        .values(delivered=True).returning(Message.id)).all()
        if not ids:
            return []
        return list(s.scalars(select(Message).where(Message.id.in_(ids)).order_by(Message.id)))

    async def push(self, ref: ConversationRef, messages: list[Outbound]) -> bool:
        """Deliver stored, undelivered messages through the citizen's channel; they stay pending on failure."""
        ids = [m.id for m in messages]
        claimed = {m.id for m in await self.tx(lambda s: self._claim_undelivered(s, Message.id.in_(ids)))}
        todo = [m for m in messages if m.id in claimed]
        if not todo:
            return True  # already handed out with the citizen's own message meanwhile
        deliver = self.channels.get(ref.channel)
        ok = False
        if deliver is not None:
            try:
                ok = bool(await deliver(ref, todo))
            except Exception:  # noqa: BLE001 — a channel failing must not lose the reply: it stays pending
                log.exception("channel %s failed to deliver to conversation %s", ref.channel, ref.id)
        if not ok:
            def unclaim(s: Session) -> None:
                s.execute(update(Message).where(Message.id.in_([m.id for m in todo])).values(delivered=False))
            await self.tx(unclaim)
        return ok

    # -- what channels ask -------------------------------------------------------------------------------------------------
    async def history(self, channel: str, user_id: str, limit: int = 50) -> list[Outbound]:
        """The conversation as the citizen saw it (their own messages have sender_kind "citizen"), oldest first."""
        def read(s: Session) -> list[Outbound]:
            conv = self._find(s, channel, user_id)
            if conv is None:
                return []
            rows = s.scalars(select(Message).where(Message.conversation_id == conv.id,
                                                   Message.direction != "internal")
                             .order_by(Message.id.desc()).limit(limit)).all()
            return [outbound_of(m) for m in reversed(rows)]
        return list(await self.tx(read))

    async def status(self, channel: str, user_id: str) -> dict[str, Any]:
        def read(s: Session) -> dict[str, Any]:
            conv = self._find(s, channel, user_id)
            if conv is None:
                return {"state": "bot", "ticket_id": None, "queue_position": None, "clerk": None,
                        "office_hours": self.office.is_open(utcnow()), "expected": None}
            return self._status(s, conv)
        return dict(await self.tx(read))

    async def rate(self, channel: str, user_id: str, score: int, message_id: Optional[int] = None) -> None:
        if not isinstance(score, int) or not 1 <= score <= 5:
            raise ValueError("评价须为 1–5（5 = 非常满意，1 = 非常不满意）/ score must be 1..5")

        def store(s: Session) -> None:
            conv = self._find(s, channel, user_id)
            if conv is None:
                raise ValueError("会话不存在 / no such conversation")
            if message_id is not None:
                if not 1 <= message_id < 2**31:
                    raise ValueError("被评价的消息不存在 / no such message")
                owner = s.scalar(select(Message.conversation_id).where(Message.id == message_id))
                if owner != conv.id:
                    raise ValueError("被评价的消息不在此会话中 / message not in this conversation")
            s.add(Rating(conversation_id=conv.id, message_id=message_id, score=score))
        await self.tx(store)

    # -- views ---------------------------------------------------------------------------------------------------------
    def ticket_view(self, s: Session, t: Ticket) -> dict[str, Any]:
        sla_minutes = self.sla_minutes
        conv = t.conversation
        now = utcnow()
        opened = as_utc(t.opened_at)
        assert opened is not None
        end = as_utc(t.claimed_at) if t.status != "pending" and t.claimed_at else now
        last = s.scalar(select(Message.text).where(Message.conversation_id == t.conversation_id,
                                                   Message.direction == "inbound")
                        .order_by(Message.id.desc()).limit(1))
        waited = (now - opened).total_seconds()
        name = self._service(t.service)[0]
        return {
            "id": t.id, "conversation_id": t.conversation_id, "status": t.status, "priority": t.priority,
            "reason": t.reason, "service": t.service, "service_name": name, "aspect": t.aspect,
            "region": conv.region, "channel": conv.channel, "candidates": t.candidates or [],
            "confidence": t.confidence,
            "assignee": {"id": t.assignee.id, "username": t.assignee.username,
                         "display_name": t.assignee.display_name} if t.assignee else None,
            "department": t.department, "opened_at": opened.isoformat(), "waited_s": round(waited, 1),
            "response_s": round(((end or now) - opened).total_seconds(), 1),
            "sla_s": sla_minutes * 60, "overdue": t.status == "pending" and waited > sla_minutes * 60,
            "last_message": mask(last or ""),
            "snoozed_until": as_utc(t.snoozed_until).isoformat() if t.snoozed_until else None,  # type: ignore[union-attr]
        }
