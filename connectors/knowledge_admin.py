"""Administration of what the desk learns: knowledge candidates (review, edit, approve → FAQ entries in the
knowledge base → index rebuilt and reloaded without a restart), draft replies for clerks, and statistics.

Approved answers go to `<corpus_dir>/faq/desk-approved.jsonl`, an ordinary FAQ file of the knowledge base, so
they are validated, versioned and indexed exactly like the bundled ones. If the new file does not validate or
the index cannot be built, the file is restored and nothing changes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import statistics
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any, Optional

import anyio
from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from retrieval import KnowledgeService
from retrieval.answers import render_card_text
from retrieval.service import CorpusError, build_corpus_index

from .kv import KV, as_utc
from .pii import mask_any
from .store import AuditLog, Conversation, KnowledgeCandidate, Message, Rating, Ticket, utcnow
from .tickets import Actor, DeskError, audit

APPROVED_FILE = "desk-approved.jsonl"
BUILD_KEY, BUILD_TTL_S = "knowledge:build", 900.0


def candidate_view(c: KnowledgeCandidate) -> dict[str, Any]:
    return {"id": c.id, "questions": c.questions, "answer": c.answer, "service": c.service, "status": c.status,
            "ticket_id": c.ticket_id, "faq_id": c.faq_id, "created_by": c.created_by,
            "created_at": as_utc(c.created_at).isoformat(),  # type: ignore[union-attr]
            "reviewed_at": as_utc(c.reviewed_at).isoformat() if c.reviewed_at else None}  # type: ignore[union-attr]


class KnowledgeAdmin:
    def __init__(self, factory: sessionmaker[Session], kb: KnowledgeService, kv: KV) -> None:
        self.factory = factory
        self.kb = kb
        self.kv = kv
        self._build_lock = asyncio.Lock()

    async def _build(self) -> tuple[Path, bool]:
        """Validate the knowledge base and (re)build its index if it changed, in a worker thread."""
        return await anyio.to_thread.run_sync(
            lambda: build_corpus_index(self.kb.settings, embedder=self.kb.embedder))

    @contextlib.asynccontextmanager
    async def _building(self) -> AsyncIterator[None]:
        """One knowledge-base change at a time: in this process (asyncio lock) and across gateway replicas (a KV
        key; it expires on its own if a process dies mid-build)."""
        async with self._build_lock:
            if not await anyio.to_thread.run_sync(self.kv.add_once, BUILD_KEY, BUILD_TTL_S):
                raise DeskError(409, "另一项知识库更新正在进行，请稍后再试 / another knowledge update is running")
            try:
                yield
            finally:
                await anyio.to_thread.run_sync(self.kv.delete, BUILD_KEY)

    @property
    def faq_path(self) -> Path:
        return self.kb.settings.corpus_dir / "faq" / APPROVED_FILE

    # -- drafts for the desk -------------------------------------------------------------------------------------------
    def service_info(self, service: str) -> tuple[str, str]:
        """Guide id → (name, department); KeyError if unknown."""
        corpus = self.kb.retriever.data.corpus
        guide = corpus.guides.get(service) if corpus is not None else None
        if guide is None:
            raise KeyError(service)
        return guide.name, guide.department

    def services(self) -> list[dict[str, str]]:
        corpus = self.kb.retriever.data.corpus
        guides = corpus.guides.values() if corpus is not None else []
        return [{"id": g.id, "name": g.name, "department": g.department} for g in guides]

    def draft(self, ticket: Ticket, question: Optional[str]) -> str:
        """A reply for the clerk to check and send: the best candidate's answer for the asked aspect."""
        service = next((c.get("id") for c in ticket.candidates or [] if c.get("id")), None) or ticket.service
        try:
            result = self.kb.answer(question or "", service=service, aspect=ticket.aspect) if (question or service) \
                else None
        except Exception:  # noqa: BLE001 — a draft is a convenience; the clerk can always write one
            result = None
        if result is None or not result.cards:
            return "您好！关于您咨询的问题，"
        body = "\n\n".join(render_card_text(card) for card in result.cards[:2])
        return f"您好！关于您咨询的问题，答复如下：\n{body}"

    # -- candidates ----------------------------------------------------------------------------------------------------
    def candidates(self, status: Optional[str] = "draft") -> list[dict[str, Any]]:
        with self.factory() as s:
            q = select(KnowledgeCandidate).order_by(KnowledgeCandidate.id.desc())
            if status:
                q = q.where(KnowledgeCandidate.status == status)
            return [candidate_view(c) for c in s.scalars(q)]

    def _get(self, s: Session, cid: int) -> KnowledgeCandidate:
        c = s.get(KnowledgeCandidate, cid)
        if c is None:
            raise DeskError(404, f"知识候选 {cid} 不存在 / no such candidate")
        return c

    def edit(self, actor: Actor, cid: int, questions: list[str], answer: str, service: Optional[str]) -> dict[str, Any]:
        questions = [q.strip() for q in questions if q and q.strip()]
        if not questions or not (answer or "").strip():
            raise DeskError(422, "请至少填写一个问题和答案 / at least one question and an answer are required")
        with self.factory() as s, s.begin():
            c = self._get(s, cid)
            if c.status != "draft":
                raise DeskError(409, "只能修改待审核的候选 / only drafts can be edited")
            c.questions, c.answer, c.service = questions, answer.strip(), service or None
            audit(s, actor.username, "candidate_edit", f"candidate:{cid}", {"questions": questions})
            return candidate_view(c)

    def reject(self, actor: Actor, cid: int) -> dict[str, Any]:
        with self.factory() as s, s.begin():
            c = self._get(s, cid)
            if c.status != "draft":
                raise DeskError(409, "该候选已审核 / already reviewed")
            c.status, c.reviewed_by, c.reviewed_at = "rejected", actor.id, utcnow()
            audit(s, actor.username, "candidate_reject", f"candidate:{cid}")
            return candidate_view(c)

    async def approve(self, actor: Actor, cid: int) -> dict[str, Any]:
        """Add the candidate to the knowledge base and publish a new index; all or nothing."""
        async with self._building():
            with self.factory() as s:
                c = self._get(s, cid)
                if c.status != "draft":
                    raise DeskError(409, "该候选已审核 / already reviewed")
                # A random part keeps ids unique even if the database was reset while the corpus kept its file.
                tag = secrets.token_hex(3)
                rows = [{"id": f"desk-{c.id}-{tag}-{i + 1}", "service": c.service, "question": q, "answer": c.answer}
                        for i, q in enumerate(c.questions)]
                written = (list(c.questions), c.answer, c.service)
            path = self.faq_path
            before = path.read_bytes() if path.exists() else None
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as fh:
                for row in rows:
                    fh.write(json.dumps({k: v for k, v in row.items() if v is not None}, ensure_ascii=False) + "\n")
            try:
                index, _ = await self._build()
                with self.factory() as s, s.begin():
                    # Still the draft we wrote out? (it may have been edited or rejected during the build)
                    done: CursorResult[Any] = s.execute(update(KnowledgeCandidate)  # type: ignore[assignment]
                                     .where(KnowledgeCandidate.id == cid, KnowledgeCandidate.status == "draft")
                                     .values(status="approved", reviewed_by=actor.id, reviewed_at=utcnow(),
                                             faq_id=rows[0]["id"]))
                    now = s.get(KnowledgeCandidate, cid)
                    if done.rowcount != 1 or now is None or written != (list(now.questions), now.answer, now.service):
                        raise DeskError(409, "审核期间该候选已被修改或驳回，请刷新后重试 / changed meanwhile")
                    audit(s, actor.username, "candidate_approve", f"candidate:{cid}",
                          {"faq_ids": [r["id"] for r in rows], "index": index.name})
            except CorpusError as exc:
                self._restore(path, before)
                problems = "；".join(f"{p.field}: {p.message}" for p in exc.problems[:3])
                raise DeskError(422, f"知识库校验未通过：{problems}") from exc
            except BaseException:
                self._restore(path, before)
                await self._build()
                raise
            reloaded = await anyio.to_thread.run_sync(self.kb.reload)
            with self.factory() as s:
                view = candidate_view(self._get(s, cid))
            return {**view, "index": index.name, "reloaded": reloaded}

    @staticmethod
    def _restore(path: Path, before: Optional[bytes]) -> None:
        if before is None:
            path.unlink(missing_ok=True)
        else:
            path.write_bytes(before)

    async def rebuild(self, actor: Actor) -> dict[str, Any]:
        """Validate the knowledge base, rebuild its index if it changed, and load it."""
        async with self._building():
            try:
                index, built = await self._build()
            except CorpusError as exc:
                problems = [f"{p.path}:{p.line} {p.field} {p.message}" for p in exc.problems[:20]]
                raise DeskError(422, "知识库校验未通过：" + "；".join(problems)) from exc
            reloaded = await anyio.to_thread.run_sync(self.kb.reload)
        with self.factory() as s, s.begin():
            audit(s, actor.username, "knowledge_reload", index.name, {"built": built, "reloaded": reloaded})
        return {"index": index.name, "built": built, "reloaded": reloaded}

    # -- statistics ----------------------------------------------------------------------------------------------------
    def stats(self, days: int = 7) -> dict[str, Any]:
        since = utcnow() - timedelta(days=days)
        with self.factory() as s:
            conversations = s.scalar(select(func.count(Conversation.id)).where(Conversation.updated_at >= since)) or 0
            inbound = s.scalars(select(Message.payload).where(Message.direction == "inbound",
                                                              Message.created_at >= since)).all()
            to_bot = [p for p in inbound if (p or {}).get("routed") == "bot"]
            answered = sum(1 for p in to_bot if (p or {}).get("answered"))
            tickets = s.scalars(select(Ticket).where(Ticket.opened_at >= since)).all()
            handed = len({t.conversation_id for t in tickets})
            waits = sorted((as_utc(t.claimed_at) - as_utc(t.opened_at)).total_seconds()  # type: ignore[operator]
                            for t in tickets if t.claimed_at)
            scores = s.scalars(select(Rating.score).where(Rating.created_at >= since)).all()
            by_status = Counter(t.status for t in tickets)
            services = Counter(t.service for t in tickets if t.service)
        return mask_any({
            "days": days,
            "conversations": conversations,
            "messages": len(inbound),
            "handoff_rate": round(handed / conversations, 3) if conversations else None,
            "answered_share": round(answered / len(to_bot), 3) if to_bot else None,
            "wait_p50_s": round(statistics.median(waits), 1) if waits else None,
            "wait_p90_s": round(waits[min(len(waits) - 1, int(0.9 * len(waits)))], 1) if waits else None,
            "satisfaction": {"avg": round(sum(scores) / len(scores), 2) if scores else None, "count": len(scores),
                             "by_score": {str(k): scores.count(k) for k in range(5, 0, -1)}},
            "tickets_by_status": dict(by_status),
            "top_services": [{"service": k, "tickets": v} for k, v in services.most_common(10)],
        })

    def audit_log(self, limit: int = 200) -> list[dict[str, Any]]:
        with self.factory() as s:
            rows = s.scalars(select(AuditLog).order_by(AuditLog.id.desc()).limit(limit)).all()
            return [{"id": r.id, "actor": r.actor, "action": r.action, "target": r.target,
                     "detail": mask_any(r.detail), "at": as_utc(r.at).isoformat()} for r in rows]  # type: ignore[union-attr]
