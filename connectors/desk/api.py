"""JSON API of the clerk desk and the admin page (connectors/CONTRACT.md), and the desk's live websocket."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Annotated, Any, Optional

import anyio
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ..auth import COOKIE, Auth, clerk_view, create_clerk, hash_password
from ..events import EventBus
from ..knowledge_admin import KnowledgeAdmin
from ..metrics import Metrics
from ..store import Clerk, Ticket
from ..tickets import Actor, Desk, DeskError, audit, may_see


class Login(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=128)


class Text(BaseModel):
    text: str = Field(min_length=1, max_length=4000)


class Transfer(BaseModel):
    clerk_id: Optional[int] = None
    department: Optional[str] = Field(default=None, max_length=128)


class Snooze(BaseModel):
    minutes: int = Field(ge=1, le=7 * 24 * 60)


class Priority(BaseModel):
    priority: int = Field(ge=0, le=3)


class KnowledgeIn(BaseModel):
    questions: list[str] = Field(min_length=1, max_length=20)
    answer: str = Field(min_length=1, max_length=4000)
    service: Optional[str] = Field(default=None, max_length=128)


class ClerkIn(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=8, max_length=128)
    role: str = Field(default="clerk", pattern="^(clerk|admin)$")
    department: Optional[str] = Field(default=None, max_length=128)
    display_name: Optional[str] = Field(default=None, max_length=64)


class ClerkUpdate(BaseModel):
    role: Optional[str] = Field(default=None, pattern="^(clerk|admin)$")
    department: Optional[str] = Field(default=None, max_length=128)
    display_name: Optional[str] = Field(default=None, max_length=64)
    active: Optional[bool] = None
    password: Optional[str] = Field(default=None, min_length=8, max_length=128)


# Database ids: bounded, so an absurd number is a 422 rather than an overflow inside the database driver.
RowId = Annotated[int, Path(ge=1, le=2**31 - 1)]


SESSION_RECHECK_S = 30.0


def _desk_error(exc: DeskError) -> HTTPException:
    return HTTPException(exc.status, exc.detail)


def desk_router(factory: sessionmaker[Session], auth: Auth, desk: Desk, admin: KnowledgeAdmin, bus: EventBus,
                metrics: Metrics) -> APIRouter:
    router = APIRouter()
    clerk = Depends(auth.require_clerk)
    lead = Depends(auth.require_admin)

    async def run(coro: Any) -> Any:
        try:
            return await coro
        except DeskError as exc:
            raise _desk_error(exc) from exc

    # -- session -------------------------------------------------------------------------------------------------------
    @router.post("/api/auth/login", tags=["auth"])
    def login(body: Login, request: Request, response: Response) -> dict[str, Any]:
        result = auth.login(body.username, body.password, response, request.client.host if request.client else "")
        with factory() as s, s.begin():
            audit(s, body.username, "login", None)
        return result

    @router.post("/api/auth/logout", tags=["auth"])
    def logout(response: Response, actor: Actor = clerk) -> dict[str, Any]:
        auth.logout(response)
        with factory() as s, s.begin():
            audit(s, actor.username, "logout", None)
        return {"ok": True}

    @router.get("/api/auth/me", tags=["auth"])
    def me(request: Request) -> dict[str, Any]:
        found = auth.session(request.cookies.get(COOKIE))
        if found is None:
            raise HTTPException(401, "请先登录 / login required")
        return {"clerk": clerk_view(found[0]), "csrf": found[1]}

    # -- the queue and a ticket ------------------------------------------------------------------------------------------
    @router.get("/api/desk/queue", tags=["desk"])
    async def queue(status: str = "pending,open,snoozed", mine: bool = False, department: Optional[str] = None,
                    actor: Actor = clerk) -> dict[str, Any]:
        statuses = tuple(x for x in status.split(",") if x in ("pending", "open", "snoozed", "resolved"))
        if not statuses:
            raise HTTPException(422, "status 须为 pending/open/snoozed/resolved / unknown status")
        return {"tickets": await desk.queue(actor, statuses, mine, department)}

    @router.get("/api/desk/tickets/{ticket_id}", tags=["desk"])
    async def ticket(ticket_id: RowId, actor: Actor = clerk) -> dict[str, Any]:
        detail: dict[str, Any] = await run(desk.detail(actor, ticket_id))
        return detail

    @router.post("/api/desk/tickets/{ticket_id}/claim", tags=["desk"])
    async def claim(ticket_id: RowId, actor: Actor = clerk) -> dict[str, Any]:
        return {"ticket": await run(desk.claim(actor, ticket_id))}

    @router.post("/api/desk/tickets/{ticket_id}/reply", tags=["desk"])
    async def reply(ticket_id: RowId, body: Text, actor: Actor = clerk) -> dict[str, Any]:
        result: dict[str, Any] = await run(desk.reply(actor, ticket_id, body.text))
        return result

    @router.post("/api/desk/tickets/{ticket_id}/note", tags=["desk"])
    async def note(ticket_id: RowId, body: Text, actor: Actor = clerk) -> dict[str, Any]:
        result: dict[str, Any] = await run(desk.note(actor, ticket_id, body.text))
        return result

    @router.post("/api/desk/tickets/{ticket_id}/transfer", tags=["desk"])
    async def transfer(ticket_id: RowId, body: Transfer, actor: Actor = clerk) -> dict[str, Any]:
        return {"ticket": await run(desk.transfer(actor, ticket_id, body.clerk_id, body.department))}

    @router.post("/api/desk/tickets/{ticket_id}/snooze", tags=["desk"])
    async def snooze(ticket_id: RowId, body: Snooze, actor: Actor = clerk) -> dict[str, Any]:
        return {"ticket": await run(desk.snooze(actor, ticket_id, body.minutes))}

    @router.post("/api/desk/tickets/{ticket_id}/priority", tags=["desk"])
    async def priority(ticket_id: RowId, body: Priority, actor: Actor = clerk) -> dict[str, Any]:
        return {"ticket": await run(desk.set_priority(actor, ticket_id, body.priority))}

    @router.post("/api/desk/tickets/{ticket_id}/resolve", tags=["desk"])
    async def resolve(ticket_id: RowId, actor: Actor = clerk) -> dict[str, Any]:
        return {"ticket": await run(desk.resolve(actor, ticket_id))}

    @router.post("/api/desk/tickets/{ticket_id}/hand-back", tags=["desk"])
    async def hand_back(ticket_id: RowId, actor: Actor = clerk) -> dict[str, Any]:
        return {"ticket": await run(desk.hand_back(actor, ticket_id))}

    @router.post("/api/desk/tickets/{ticket_id}/knowledge", tags=["desk"])
    async def knowledge(ticket_id: RowId, body: KnowledgeIn, actor: Actor = clerk) -> dict[str, Any]:
        return {"candidate": await run(desk.save_knowledge(actor, ticket_id, body.questions, body.answer,
                                                           body.service))}

    @router.get("/api/desk/clerks", tags=["desk"])
    def clerks(actor: Actor = clerk) -> dict[str, Any]:
        with factory() as s:
            return {"clerks": [clerk_view(c) for c in s.scalars(select(Clerk).where(Clerk.active.is_(True))
                                                                .order_by(Clerk.username))]}

    @router.get("/api/desk/departments", tags=["desk"])
    def departments(actor: Actor = clerk) -> dict[str, Any]:
        names = {x["department"] for x in admin.services() if x["department"]}
        with factory() as s:
            names |= {d for d in s.scalars(select(Clerk.department)) if d}
        return {"departments": sorted(names)}

    @router.get("/api/desk/services", tags=["desk"])
    def services(actor: Actor = clerk) -> dict[str, Any]:
        return {"services": admin.services()}

    @router.websocket("/desk/ws")
    async def live(ws: WebSocket) -> None:
        found = auth.session(ws.cookies.get(COOKIE))
        if found is None:
            await ws.close(code=4401, reason="login required")
            return
        actor = Actor.of(found[0])
        await ws.accept()
        metrics.desk_clients.inc()
        try:
            async with bus.subscribe() as events:
                await ws.send_json({"type": "hello", "clerk": actor.username})
                closed = asyncio.create_task(_until_closed(ws))
                checked = time.monotonic()
                getter = asyncio.create_task(events.get())
                try:
                    while not closed.done():
                        done, _ = await asyncio.wait({getter, closed}, timeout=SESSION_RECHECK_S,
                                                     return_when=asyncio.FIRST_COMPLETED)
                        if time.monotonic() - checked >= SESSION_RECHECK_S:
                            # a deactivated account, a changed password or an expired session ends the feed too
                            checked = time.monotonic()
                            if await anyio.to_thread.run_sync(auth.session, ws.cookies.get(COOKIE)) is None:
                                await ws.close(code=4401, reason="session ended")
                                break
                        if getter not in done:
                            continue
                        event = getter.result()
                        getter = asyncio.create_task(events.get())
                        if await anyio.to_thread.run_sync(_visible, desk, factory, actor, event):
                            await ws.send_json(event)
                finally:
                    getter.cancel()
                    closed.cancel()
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            metrics.desk_clients.dec()
            with contextlib.suppress(RuntimeError):
                await ws.close()

    # -- admin ---------------------------------------------------------------------------------------------------------
    @router.get("/api/admin/candidates", tags=["admin"])
    def candidates(status: Optional[str] = "draft", actor: Actor = lead) -> dict[str, Any]:
        return {"candidates": admin.candidates(status or None)}

    @router.put("/api/admin/candidates/{cid}", tags=["admin"])
    def edit_candidate(cid: RowId, body: KnowledgeIn, actor: Actor = lead) -> dict[str, Any]:
        try:
            return {"candidate": admin.edit(actor, cid, body.questions, body.answer, body.service)}
        except DeskError as exc:
            raise _desk_error(exc) from exc

    @router.post("/api/admin/candidates/{cid}/approve", tags=["admin"])
    async def approve(cid: RowId, actor: Actor = lead) -> dict[str, Any]:
        return {"candidate": await run(admin.approve(actor, cid))}

    @router.post("/api/admin/candidates/{cid}/reject", tags=["admin"])
    def reject(cid: RowId, actor: Actor = lead) -> dict[str, Any]:
        try:
            return {"candidate": admin.reject(actor, cid)}
        except DeskError as exc:
            raise _desk_error(exc) from exc

    @router.post("/api/admin/reload", tags=["admin"])
    async def reload(actor: Actor = lead) -> dict[str, Any]:
        result: dict[str, Any] = await run(admin.rebuild(actor))
        return result

    @router.get("/api/admin/clerks", tags=["admin"])
    def list_clerks(actor: Actor = lead) -> dict[str, Any]:
        with factory() as s:
            return {"clerks": [clerk_view(c) for c in s.scalars(select(Clerk).order_by(Clerk.id))]}

    @router.post("/api/admin/clerks", tags=["admin"], status_code=201)
    def add_clerk(body: ClerkIn, actor: Actor = lead) -> dict[str, Any]:
        try:
            view = create_clerk(factory, body.username, body.password, body.role, body.department,
                                body.display_name)
        except ValueError as exc:
            raise HTTPException(409 if "已存在" in str(exc) else 422, str(exc)) from exc
        with factory() as s, s.begin():
            audit(s, actor.username, "clerk_create", f"clerk:{view['id']}", {"username": body.username,
                                                                              "role": body.role})
        return {"clerk": view}

    @router.put("/api/admin/clerks/{clerk_id}", tags=["admin"])
    def update_clerk(clerk_id: RowId, body: ClerkUpdate, actor: Actor = lead) -> dict[str, Any]:
        with factory() as s, s.begin():
            c = s.get(Clerk, clerk_id)
            if c is None:
                raise HTTPException(404, f"工作人员 {clerk_id} 不存在 / no such clerk")
            if c.id == actor.id and (body.active is False or body.role == "clerk"):
                raise HTTPException(409, "不能停用自己或取消自己的管理员权限 / cannot demote or disable yourself")
            changed = body.model_dump(exclude_unset=True, exclude_none=True)
            if body.password is not None:
                c.password_hash = hash_password(body.password)
            for key in ("role", "department", "display_name", "active"):
                if key in changed:
                    setattr(c, key, changed[key])
            audit(s, actor.username, "clerk_update", f"clerk:{c.id}",
                  {k: ("***" if k == "password" else v) for k, v in changed.items()})
            return {"clerk": clerk_view(c)}

    @router.get("/api/admin/stats", tags=["admin"])
    def stats(days: int = Query(7, ge=1, le=366), actor: Actor = lead) -> dict[str, Any]:
        return admin.stats(days)

    @router.get("/api/admin/audit", tags=["admin"])
    def audit_log(limit: int = Query(200, ge=1, le=2000), actor: Actor = lead) -> dict[str, Any]:
        return {"entries": admin.audit_log(limit)}

    return router


async def _until_closed(ws: WebSocket) -> None:
    """Read (and ignore) what the console sends until it disconnects."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            await ws.receive_text()


def _visible(desk: Desk, factory: sessionmaker[Session], actor: Actor, event: dict[str, Any]) -> bool:
    ticket = event.get("ticket")
    if isinstance(ticket, dict):
        return may_see(actor, ticket.get("department"), (ticket.get("assignee") or {}).get("id"))
    ticket_id = event.get("ticket_id")
    if ticket_id is None:
        return False  # conversations with the bot only are not the desk's business
    if actor.is_admin or not actor.department:
        return True
    with factory() as s:
        t = s.get(Ticket, ticket_id)
        return t is not None and desk.visible(actor, t)
