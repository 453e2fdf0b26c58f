"""The FastAPI gateway (DESIGN §2): channels, the conversation hub, the clerk desk, admin, metrics.

`build_gateway()` wires every part once; `create_app()` returns the ASGI app uvicorn serves (FastAPI with the
socket.io server of the web widget in front of it)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Optional

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from knowledge import ASPECTS
from retrieval import KnowledgeService

from . import web, wechat
from .auth import Auth
from .config import GatewaySettings, get_gateway_settings
from .desk.api import desk_router
from .desk.pages import mount_pages
from .events import EventBus
from .hub import Hub, Inbound
from .knowledge_admin import KnowledgeAdmin
from .kv import KV
from .metrics import Metrics
from .office_hours import OfficeHours
from .rasa_client import RasaClient
from .store import Ticket, open_database
from .tickets import Desk

log = logging.getLogger("govbot.gateway")


class AskRequest(BaseModel):
    question: str = Field(min_length=1, max_length=500, description="市民的问题")
    aspect: Optional[str] = Field(default=None, description=f"只问某一项：{', '.join(ASPECTS)}")
    situation: Optional[str] = Field(default=None, description="情形 id")
    region: Optional[str] = None


class ChatRequest(BaseModel):
    user_id: str = Field(min_length=1, max_length=128, description="调用方自己的用户标识")
    text: str = Field(min_length=1, description="市民的消息或按钮的 payload")
    region: Optional[str] = Field(default=None, max_length=64)


class RatingRequest(BaseModel):
    user_id: str = Field(min_length=1, max_length=128)
    score: int = Field(ge=1, le=5, description="5 非常满意 … 1 非常不满意")
    message_id: Optional[int] = Field(default=None, ge=1, le=2**31 - 1)


class BodyLimit:
    """Refuse request bodies over the limit with 413 before the app sees them. A body without Content-Length
    (chunked) is read up to the limit first, then replayed to the app."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._too_large(send)
            return
        if declared is not None:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                await self._too_large(send)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()
        await self.app(scope, replay, send)

    async def _too_large(self, send: Send) -> None:
        detail = f"请求内容过大（上限 {self.limit} 字节）/ request body too large"
        body = json.dumps({"detail": detail}, ensure_ascii=False).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json; charset=utf-8")]})
        await send({"type": "http.response.body", "body": body})


@dataclass
class Gateway:
    settings: GatewaySettings
    app: FastAPI
    asgi: Any
    engine: Engine
    factory: sessionmaker[Session]
    hub: Hub
    desk: Desk
    auth: Auth
    admin: KnowledgeAdmin
    kb: KnowledgeService
    kv: KV
    metrics: Metrics
    wechat: Optional[wechat.WeChatChannel]


def build_gateway(settings: Optional[GatewaySettings] = None, kb: Optional[KnowledgeService] = None) -> Gateway:
    settings = settings or get_gateway_settings()
    kb = kb or KnowledgeService()
    engine, factory = open_database(settings.database_url)
    metrics = Metrics()
    bus = EventBus(redis_url=settings.redis_url, scope=settings.database_url)
    kv = KV(factory)
    admin = KnowledgeAdmin(factory, kb, kv)
    token = settings.rasa_token
    if token is None:
        from bot.runner import auth_token

        token = auth_token()
    rasa = RasaClient(settings.rasa_url, token, settings.rasa_timeout)
    hub = Hub(factory, rasa, bus, metrics, OfficeHours.parse(settings.office_hours, settings.timezone),
              max_text_chars=settings.max_text_chars, sla_minutes=settings.sla_minutes,
              service_info=admin.service_info)
    desk = Desk(hub, drafter=admin.draft)
    auth = Auth(factory, settings.secret(), settings.cookie_secure)

    def count_tickets() -> dict[str, int]:
        with factory() as s:
            rows = s.execute(select(Ticket.status, func.count(Ticket.id)).group_by(Ticket.status)).all()
        counts = {status: 0 for status in ("pending", "open", "snoozed")}
        counts.update({status: n for status, n in rows if status != "resolved"})
        return counts

    metrics.watch_tickets(count_tickets)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        housekeeping = asyncio.create_task(_housekeeping(kv))
        relay = asyncio.create_task(bus.relay())
        try:
            yield
        finally:
            housekeeping.cancel()
            relay.cancel()
            await rasa.close()
            if wechat_channel is not None:
                await wechat_channel.aclose()

    app = FastAPI(title="govbot 政务智能问答", version="0.2.0", lifespan=lifespan,
                  description="政务智能问答网关：渠道接入、人工坐席、知识管理。Clerk/admin APIs need a session cookie "
                              "(POST /api/auth/login) and the X-CSRF-Token header on unsafe requests.")

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = "；".join(f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or '请求'}: {e.get('msg')}"
                          for e in exc.errors()[:5])
        return JSONResponse({"detail": f"请求内容不正确 / invalid request: {fields}"}, status_code=422)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, Any]:
        data = kb.retriever.data
        return {"status": "ok", "index": data.manifest["hash"], "units": len(data.units),
                "bot": "up" if await rasa.healthy() else "down"}

    @app.get("/metrics", tags=["ops"])
    def prometheus() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.post("/api/ask", tags=["knowledge"])
    def ask(req: AskRequest) -> dict[str, Any]:
        """One question straight to the knowledge base (no dialogue, no handoff)."""
        if req.aspect and req.aspect not in ASPECTS:
            raise HTTPException(422, f"未知的 aspect“{req.aspect}” / unknown aspect; 可选：{', '.join(ASPECTS)}")
        if not req.question.strip():
            raise HTTPException(422, "问题不能为空 / question must not be empty")
        result = kb.answer(req.question, aspect=req.aspect, situation=req.situation, region=req.region)
        return {
            "decision": result.decision, "aspect": result.aspect, "confidence": result.confidence,
            "cards": result.cards,
            "candidates": [{"id": h.doc_id, "title": h.title, "kind": h.kind, "confidence": h.confidence}
                           for h in result.hits],
        }

    def integrator(request: Request) -> None:
        """The JSON channel speaks for any user_id it names, so it is for trusted systems only."""
        if settings.api_token:
            sent = request.headers.get("authorization", "")
            if not secrets.compare_digest(sent.encode("utf-8", "replace"), f"Bearer {settings.api_token}".encode()):
                raise HTTPException(401, "需要有效的 API 令牌 / a valid bearer token is required")
        elif not request.client or request.client.host not in ("127.0.0.1", "::1", "localhost", "testclient"):
            raise HTTPException(403, "未配置 GOVBOT_API_TOKEN 时仅限本机调用 / loopback only without GOVBOT_API_TOKEN")

    trusted = [Depends(integrator)]

    @app.post("/api/chat", tags=["channels"], dependencies=trusted)
    async def chat(req: ChatRequest) -> dict[str, Any]:
        """A plain JSON channel ("api"): one citizen message in, the replies out. Pushes (clerk replies) come
        with the next message or from GET /api/chat/history."""
        try:
            replies = await hub.receive(Inbound("api", req.user_id, req.text,
                                                {"region": req.region} if req.region else {}))
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        return {"messages": [m.as_dict() for m in replies], "status": await hub.status("api", req.user_id)}

    @app.get("/api/chat/history", tags=["channels"], dependencies=trusted)
    async def chat_history(user_id: str, limit: int = 50) -> dict[str, Any]:
        return {"messages": [m.as_dict() for m in await hub.history("api", user_id, min(max(limit, 1), 500))],
                "status": await hub.status("api", user_id)}

    @app.post("/api/chat/rating", tags=["channels"], dependencies=trusted)
    async def chat_rating(req: RatingRequest) -> dict[str, Any]:
        try:
            await hub.rate("api", req.user_id, req.score, req.message_id)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        return {"ok": True}

    app.include_router(desk_router(factory, auth, desk, admin, bus, metrics))
    mount_pages(app)
    wechat_channel = wechat.mount(app, hub, settings, kv, answer_budget_s=settings.wechat_answer_budget)
    asgi = web.mount(app, hub, settings, kb)
    return Gateway(settings, app, BodyLimit(asgi, settings.max_body_bytes), engine, factory, hub, desk, auth, admin,
                   kb, kv, metrics, wechat_channel)


async def _housekeeping(kv: KV) -> None:
    """Drop expired dedup keys now and then."""
    while True:
        await asyncio.sleep(600)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(kv.purge)


def create_app(settings: Optional[GatewaySettings] = None, kb: Optional[KnowledgeService] = None) -> Any:
    return build_gateway(settings, kb).asgi
