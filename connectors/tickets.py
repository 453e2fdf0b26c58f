"""The clerk desk's work on handoff tickets: queue, claim, reply, notes, transfer, snooze, resolve, hand back,
and 「存为知识」. States follow Chatwoot: pending (waiting, with the bot's notice) → open (a clerk holds it) →
resolved; snoozed while waiting on the citizen. Every clerk action is written to the audit log (masked)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Optional

import anyio
from sqlalchemy import select, update
from sqlalchemy.orm import Session, selectinload

from .hub import ACTIVE_TICKET, ConversationRef, Hub, Outbound, clean_text, message_view, outbound_of
from .kv import as_utc
from .pii import mask, mask_any
from .rasa_client import BotUnavailable
from .store import AuditLog, Clerk, KnowledgeCandidate, Message, Ticket, utcnow

CANNED_REPLIES = [
    {"title": "问候", "text": "您好，我是政务服务中心工作人员，很高兴为您服务。"},
    {"title": "请稍候", "text": "您的问题我正在核实，请稍候，我会尽快回复您。"},
    {"title": "请补充信息", "text": "为了更准确地答复您，请补充说明您的户籍所在地和具体办理情形。"},
    {"title": "请致电", "text": "您的情况比较特殊，建议您拨打 12345 政务服务便民热线，或到办事窗口现场咨询。"},
    {"title": "结束语", "text": "请问还有其他可以帮您的吗？如无其他问题，本次服务到此结束，感谢您的咨询！"},
]


class DeskError(Exception):
    """An action the desk refuses; `status` is the HTTP status the API answers with."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class Actor:
    id: int
    username: str
    role: str
    department: Optional[str] = None
    display_name: Optional[str] = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @classmethod
    def of(cls, clerk: Clerk) -> Actor:
        return cls(clerk.id, clerk.username, clerk.role, clerk.department, clerk.display_name)


def may_see(actor: Actor, department: Optional[str], assignee_id: Optional[int]) -> bool:
    """Admins (leads) and clerks without a department see every ticket; a department's clerk sees unrouted
    tickets, their department's, and their own."""
    return actor.is_admin or not actor.department or department in (None, "", actor.department) \
        or assignee_id == actor.id


def audit(s: Session, actor: str, action: str, target: Optional[str], detail: Optional[dict[str, Any]] = None) -> None:
    s.add(AuditLog(actor=actor, action=action, target=target, detail=mask_any(detail) if detail else None))


class Desk:
    def __init__(self, hub: Hub, drafter: Optional[Callable[[Ticket, Optional[str]], str]] = None) -> None:
        self.hub = hub
        self.drafter = drafter  # (ticket, the citizen's question) → a draft reply from the best candidate

    # -- reading -------------------------------------------------------------------------------------------------------
    def visible(self, actor: Actor, t: Ticket) -> bool:
        return may_see(actor, t.department, t.assignee_id)

    async def queue(self, actor: Actor, statuses: tuple[str, ...] = ACTIVE_TICKET, mine: bool = False,
                    department: Optional[str] = None) -> list[dict[str, Any]]:
        def read(s: Session) -> list[dict[str, Any]]:
            self._wake_snoozed(s)
            q = select(Ticket).options(selectinload(Ticket.conversation), selectinload(Ticket.assignee)) \
                .where(Ticket.status.in_(statuses))
            if mine:
                q = q.where(Ticket.assignee_id == actor.id)
            if department:
                q = q.where(Ticket.department == department)
            tickets = [t for t in s.scalars(q) if self.visible(actor, t)]
            # Highest priority first, then the longest wait.
            tickets.sort(key=lambda t: (-t.priority, as_utc(t.opened_at)))
            return [self.hub.ticket_view(s, t) for t in tickets]
        return list(await self.hub.tx(read))

    def _wake_snoozed(self, s: Session) -> None:
        now = utcnow()
        for t in s.scalars(select(Ticket).where(Ticket.status == "snoozed", Ticket.snoozed_until.is_not(None))):
            until = as_utc(t.snoozed_until)
            if until is not None and until <= now:
                t.status, t.snoozed_until = "open", None
                t.conversation.state = "open"

    def _ticket(self, s: Session, actor: Actor, ticket_id: int) -> Ticket:
        t = s.get(Ticket, ticket_id)
        if t is None or not self.visible(actor, t):
            raise DeskError(404, f"工单 {ticket_id} 不存在 / no such ticket")
        return t

    async def detail(self, actor: Actor, ticket_id: int) -> dict[str, Any]:
        def read(s: Session) -> tuple[dict[str, Any], list[dict[str, Any]], Ticket, Optional[str]]:
            t = self._ticket(s, actor, ticket_id)
            rows = s.scalars(select(Message).options(selectinload(Message.clerk))
                             .where(Message.conversation_id == t.conversation_id).order_by(Message.id)).all()
            question = next((m.text for m in reversed(rows) if m.direction == "inbound" and m.text
                             and not m.text.startswith("/")), None)
            return self.hub.ticket_view(s, t), [message_view(m) for m in rows], t, question
        view, messages, ticket, question = await self.hub.tx(read)
        # The draft runs the retrieval model: in a worker thread, not on the event loop.
        draft = await anyio.to_thread.run_sync(self.drafter, ticket, question) if self.drafter is not None else ""
        return {"ticket": view, "messages": messages, "draft": draft, "canned": CANNED_REPLIES,
                "question": question}

    # -- acting --------------------------------------------------------------------------------------------------------
    async def _act(self, actor: Actor, ticket_id: int, action: str, change: Callable[[Session, Ticket], Any],
                   detail: Optional[dict[str, Any]] = None) -> tuple[dict[str, Any], Any, ConversationRef]:
        """Apply one clerk action in a transaction, audit it, publish the ticket's new state."""
        def run(s: Session) -> tuple[dict[str, Any], Any, ConversationRef]:
            # Write first: the row lock (PostgreSQL) or write lock (SQLite) is taken before anything is read, so
            # two clerks acting on one ticket at once are serialised and the second sees the first's result
            # (e.g. 409 on a double claim) instead of both succeeding.
            s.execute(update(Ticket).where(Ticket.id == ticket_id).values(updated_at=utcnow()))
            t = self._ticket(s, actor, ticket_id)
            result = change(s, t)
            t.updated_at = utcnow()
            audit(s, actor.username, action, f"ticket:{t.id}", detail)
            s.flush()
            view = self.hub.ticket_view(s, t)
            self.hub.publish_ticket(s, view)
            conv = t.conversation
            return view, result, ConversationRef(conv.id, conv.channel, conv.user_id)
        return await self.hub.tx(run)  # type: ignore[no-any-return]

    @staticmethod
    def _require_holder(actor: Actor, t: Ticket) -> None:
        if t.status == "resolved":
            raise DeskError(409, "工单已办结 / ticket already resolved")
        if t.assignee_id not in (None, actor.id) and not actor.is_admin:
            raise DeskError(409, f"工单已由 {t.assignee.username if t.assignee else '他人'} 处理 / held by another clerk")

    @staticmethod
    def _take(actor: Actor, t: Ticket) -> None:
        t.assignee_id = actor.id
        if t.status == "pending":
            t.status = "open"
            t.claimed_at = t.claimed_at or utcnow()
        t.conversation.state = t.status

    async def claim(self, actor: Actor, ticket_id: int) -> dict[str, Any]:
        def change(s: Session, t: Ticket) -> bool:
            self._require_holder(actor, t)
            first = t.assignee_id != actor.id
            self._take(actor, t)
            return first
        view, first, ref = await self._act(actor, ticket_id, "claim", change)
        if first:
            await self.hub.system_message(ref.id, ticket_id)  # 「工作人员…已接入」
        return view

    async def reply(self, actor: Actor, ticket_id: int, text: str) -> dict[str, Any]:
        text = self._text(text)

        def change(s: Session, t: Ticket) -> tuple[Outbound, dict[str, Any]]:
            self._require_holder(actor, t)
            if t.assignee_id is None or t.status == "pending":
                self._take(actor, t)  # answering an unclaimed ticket claims it
            t.first_response_at = t.first_response_at or utcnow()
            m = self.hub._store(s, t.conversation, "outbound", "clerk", text, None, delivered=False,
                                clerk_id=actor.id)
            s.flush()
            s.refresh(m)
            self.hub._publish_message(s, m, t.id)
            return outbound_of(m), message_view(m)
        view, (out, shown), ref = await self._act(actor, ticket_id, "reply", change, {"text": text})
        delivered = await self.hub.push(ref, [out])
        return {"ticket": view, "message": {**shown, "delivered": delivered}}

    async def note(self, actor: Actor, ticket_id: int, text: str) -> dict[str, Any]:
        text = self._text(text)

        def change(s: Session, t: Ticket) -> dict[str, Any]:
            m = self.hub._store(s, t.conversation, "internal", "clerk", text, None, clerk_id=actor.id)
            s.refresh(m)
            self.hub._publish_message(s, m, t.id)
            return message_view(m)
        view, msg, _ = await self._act(actor, ticket_id, "note", change, {"text": text})
        return {"ticket": view, "message": msg}

    async def transfer(self, actor: Actor, ticket_id: int, clerk_id: Optional[int] = None,
                       department: Optional[str] = None) -> dict[str, Any]:
        if clerk_id is None and not department:
            raise DeskError(422, "请选择转给哪位工作人员或哪个部门 / choose a clerk or a department")

        def change(s: Session, t: Ticket) -> None:
            self._require_holder(actor, t)
            if clerk_id is not None:
                target = s.get(Clerk, clerk_id)
                if target is None or not target.active:
                    raise DeskError(422, f"工作人员 {clerk_id} 不存在或已停用 / no such active clerk")
                t.assignee_id = target.id
                t.department = target.department or t.department
                if t.status == "pending":
                    t.status, t.claimed_at = "open", t.claimed_at or utcnow()
            else:
                t.assignee_id, t.status, t.department = None, "pending", department
            t.conversation.state = t.status
        view, _, _ = await self._act(actor, ticket_id, "transfer", change,
                                     {"clerk_id": clerk_id, "department": department})
        return view

    async def snooze(self, actor: Actor, ticket_id: int, minutes: int) -> dict[str, Any]:
        if not 1 <= minutes <= 7 * 24 * 60:
            raise DeskError(422, "暂挂时间须在 1 分钟到 7 天之间 / minutes must be 1..10080")

        def change(s: Session, t: Ticket) -> None:
            self._require_holder(actor, t)
            self._take(actor, t)
            t.status, t.snoozed_until = "snoozed", utcnow() + timedelta(minutes=minutes)
            t.conversation.state = "snoozed"
        view, _, _ = await self._act(actor, ticket_id, "snooze", change, {"minutes": minutes})
        return view

    async def set_priority(self, actor: Actor, ticket_id: int, priority: int) -> dict[str, Any]:
        if not 0 <= priority <= 3:
            raise DeskError(422, "优先级须为 0–3 / priority must be 0..3")

        def change(s: Session, t: Ticket) -> None:
            t.priority = priority
        view, _, _ = await self._act(actor, ticket_id, "priority", change, {"priority": priority})
        return view

    async def resolve(self, actor: Actor, ticket_id: int) -> dict[str, Any]:
        """Close the case. The conversation stays with the desk until handed back (or the citizen writes again,
        which hands it back by itself)."""
        def change(s: Session, t: Ticket) -> None:
            self._require_holder(actor, t)
            if t.assignee_id is None:
                t.assignee_id = actor.id
            t.status, t.resolved_at, t.snoozed_until = "resolved", utcnow(), None
            t.conversation.state = "resolved"
        view, _, _ = await self._act(actor, ticket_id, "resolve", change)
        return view

    async def hand_back(self, actor: Actor, ticket_id: int) -> dict[str, Any]:
        """Give the conversation back to the bot: Rasa resumes it, the ticket is resolved, the citizen is told."""
        def read(s: Session) -> tuple[int, str]:
            t = self._ticket(s, actor, ticket_id)
            if t.assignee_id not in (None, actor.id) and not actor.is_admin and t.status != "resolved":
                raise DeskError(409, "工单由其他工作人员处理 / held by another clerk")
            newer = self.hub._active_ticket(s, t.conversation_id)
            if newer is not None and newer.id != t.id:
                raise DeskError(409, f"该对话已有新的工单 #{newer.id}，请在新工单中操作 / a newer ticket is active")
            return t.conversation_id, t.conversation.sender
        conv_id, sender = await self.hub.tx(read)
        try:
            await self.hub.rasa.hand_back(sender)
        except BotUnavailable as exc:
            raise DeskError(503, "智能助手暂时不可用，无法交回，请稍后再试 / the bot is unavailable") from exc

        def change(s: Session, t: Ticket) -> None:
            if t.status != "resolved":
                t.status, t.resolved_at = "resolved", utcnow()
                t.assignee_id = t.assignee_id or actor.id
            t.snoozed_until = None
            t.conversation.state = "bot"
        view, _, _ = await self._act(actor, ticket_id, "hand_back", change)
        await self.hub.system_message(conv_id, ticket_id)  # 「人工服务已结束…」
        return view

    async def save_knowledge(self, actor: Actor, ticket_id: int, questions: list[str], answer: str,
                             service: Optional[str]) -> dict[str, Any]:
        questions = [q.strip() for q in questions if q and q.strip()]
        answer = (answer or "").strip()
        if not questions or not answer:
            raise DeskError(422, "请至少填写一个问题和答案 / at least one question and an answer are required")
        if len(answer) > 4000 or any(len(q) > 200 for q in questions) or len(questions) > 20:
            raise DeskError(422, "问题或答案太长 / questions or answer too long")

        def change(s: Session, t: Ticket) -> dict[str, Any]:
            c = KnowledgeCandidate(questions=questions, answer=answer, service=service or t.service,
                                   status="draft", created_by=actor.id, ticket_id=t.id)
            s.add(c)
            s.flush()
            return {"id": c.id, "questions": c.questions, "answer": c.answer, "service": c.service,
                    "status": c.status}
        _, candidate, _ = await self._act(actor, ticket_id, "save_knowledge", change,
                                          {"questions": questions, "service": service})
        return candidate

    @staticmethod
    def _text(text: str) -> str:
        text = clean_text(text)
        if not text:
            raise DeskError(422, "内容不能为空 / text must not be empty")
        if len(text) > 4000:
            raise DeskError(422, "内容太长（最多 4000 字）/ text too long")
        return text


__all__ = ["CANNED_REPLIES", "Actor", "Desk", "DeskError", "audit", "mask"]
