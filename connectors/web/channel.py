"""The web channel: Rasa 3.6's socket.io protocol (`rasa.core.channels.socketio.SocketIOInput` with
`session_persistence: true`) in front of the hub, plus a few `govbot_*` events our own widget uses.

Wire protocol (what rasa-webchat and any other Rasa socket.io client speak):
  client → `session_request {session_id|null}`        server → `session_confirm "<session_id>"` (a new uuid4 hex
                                                                when none or an unusable one was sent)
  client → `user_uttered {message, session_id, customData}`
  server → `bot_uttered` per message, exactly Rasa's shapes: `{text}` per paragraph (text split on blank lines);
           with buttons `{text, quick_replies: [{content_type: "text", title, payload}]}` (buttons on the last
           paragraph); `{custom: {...}}` for our payloads (`card`, `status`, `handoff`). Every event also carries
           `metadata: {message_id, sender, created_at, part, parts}` — rasa-webchat reads `metadata` separately
           and ignores keys it does not know, our widget uses it to assemble one bubble per stored message.
Extensions (ignored by other clients): `govbot_error {code, message}` for refused input, `govbot_echo` (the
citizen's own message, to the session's other tabs), and acknowledged requests `govbot_history`, `govbot_status`,
`govbot_rate`. Every socket of one session_id is in one room, so pushes (clerk replies) reach all its tabs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections import deque
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Optional

import socketio

if TYPE_CHECKING:
    from connectors.config import GatewaySettings
    from connectors.hub import ConversationRef, Hub, Outbound
    from knowledge import Corpus

log = logging.getLogger("govbot.web")

CHANNEL = "web"
SESSION_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
PAYLOAD_RE = re.compile(r"^/(\w+)(\{.*\})?$", re.S)
RATE_WINDOW_S = 60.0
RATE_MAX_MESSAGES = 30
HISTORY_LIMIT = 100
SCORE_LABELS = {5: "非常满意", 4: "满意", 3: "基本满意", 2: "不满意", 1: "非常不满意"}
INTENT_LABELS = {"request_human": "我要转人工", "deny": "都不是", "affirm": "是的", "greet": "您好",
                 "goodbye": "再见", "thanks": "谢谢"}

ERRORS = {
    "empty": "消息不能为空，请输入您要咨询的问题。",
    "too_long": "消息太长了（最多 {limit} 个字），请精简后再发送，或分几条发送。",
    "bad_request": "消息格式不正确，请刷新页面后重试。",
    "no_session": "会话尚未建立，请稍候或刷新页面后重试。",
    "rate_limited": "您发送得太快了，请稍等片刻再发送。",
    "busy": "系统繁忙，请稍后再试。您的消息没有发送成功，已为您保留在输入框中。",
    "bad_score": "评价无效，请选择：非常满意、满意、基本满意、不满意、非常不满意。",
    "rate_failed": "评价没有保存成功：{reason}",
}


class Presence:
    """Which sessions have a socket on any gateway replica (Redis sets of socket ids per session). A replica that
    dies leaves its ids behind until the key expires; a push is then reported delivered although nobody saw it
    live — the widget loads the history on every (re)connect, so it still shows."""

    TTL_S = 24 * 3600

    def __init__(self, url: str) -> None:
        import redis.asyncio as aioredis

        self.redis = aioredis.from_url(url)

    @staticmethod
    def key(session_id: str) -> str:
        return f"govbot:web:presence:{session_id}"

    async def join(self, session_id: str, sid: str) -> None:
        await self.redis.sadd(self.key(session_id), sid)
        await self.redis.expire(self.key(session_id), self.TTL_S)

    async def leave(self, session_id: str, sid: str) -> None:
        await self.redis.srem(self.key(session_id), sid)

    async def any(self, session_id: str) -> bool:
        return bool(await self.redis.scard(self.key(session_id)))


def room_of(session_id: str) -> str:
    """The room of a session (prefixed so it can never be another socket's own sid room)."""
    return f"s:{session_id}"


def _iso(value: Any) -> Optional[str]:
    if isinstance(value, datetime):
        if value.tzinfo is None:  # the store keeps naive UTC
            value = value.replace(tzinfo=timezone.utc)
        return value.isoformat()
    return str(value) if value is not None else None


def rasa_messages(out: Outbound) -> list[dict[str, Any]]:
    """One stored outbound message as Rasa's socket.io `bot_uttered` payloads (SocketIOOutput's shapes)."""
    meta = {"message_id": out.id, "sender": out.sender_kind, "created_at": _iso(out.created_at)}
    messages: list[dict[str, Any]] = []
    text = (out.text or "").strip()
    if out.buttons:
        parts = text.split("\n\n") if text else [""]
        messages = [{"text": p, "quick_replies": []} for p in parts]
        messages[-1]["quick_replies"] = [
            {"content_type": "text", "title": b.get("title", ""), "payload": b.get("payload", "")}
            for b in out.buttons
        ]
    elif text:
        messages = [{"text": p} for p in text.split("\n\n")]
    if out.custom:
        messages.append({"custom": out.custom})
    n = len(messages)
    return [{**m, "metadata": {**meta, "part": i, "parts": n}} for i, m in enumerate(messages)]


def history_item(item: Outbound, label: Callable[[str], Optional[str]]) -> dict[str, Any]:
    """A stored message of `Hub.history` as JSON for the widget (the citizen's own have sender_kind "citizen")."""
    inbound = item.sender_kind == "citizen"
    text = item.text
    view = {
        "id": item.id,
        "direction": "inbound" if inbound else "outbound",
        "sender": item.sender_kind,
        "text": text,
        "buttons": list(item.buttons or []),
        "custom": item.custom,
        "created_at": _iso(item.created_at),
    }
    if inbound and text:
        shown = label(text)
        if shown:
            view["display"] = shown
    return view


class WebChannel:
    """Socket.io server + hub wiring. `sio` is mounted by `connectors.web.mount`."""

    def __init__(self, hub: Hub, settings: GatewaySettings,
                 corpus: Optional[Callable[[], Optional[Corpus]]] = None) -> None:
        self.hub = hub
        self.max_chars = settings.max_text_chars
        self._corpus = corpus or (lambda: None)
        origins_setting = settings.widget_origins
        origins: Any = "*" if origins_setting.strip() == "*" else [o.strip() for o in origins_setting.split(",")
                                                                      if o.strip()]
        manager = None
        self.presence: Optional[Presence] = None
        if settings.redis_url:  # rooms across gateway replicas: emits go through Redis, presence is kept there
            manager = socketio.AsyncRedisManager(settings.redis_url, channel="govbot-socketio")
            self.presence = Presence(settings.redis_url)
        self.sio = socketio.AsyncServer(
            async_mode="asgi", cors_allowed_origins=origins, client_manager=manager,
            max_http_buffer_size=settings.max_body_bytes, logger=False, engineio_logger=False,
        )
        self._sessions: dict[str, str] = {}  # socket sid → session_id
        self._locks: dict[str, asyncio.Lock] = {}  # session_id → one citizen turn at a time
        self._recent: dict[str, deque[float]] = {}  # session_id → times of recent messages (rate limit)
        self._register()
        hub.register_channel(CHANNEL, self.deliver)

    # -- helpers ---------------------------------------------------------------------------------------------------
    def connected_here(self, session_id: str) -> bool:
        return any(True for _ in self.sio.manager.get_participants("/", room_of(session_id)))

    async def connected(self, session_id: str) -> bool:
        """A socket of this session is connected (to this replica, or to any when Redis is configured)."""
        if self.connected_here(session_id):
            return True
        return self.presence is not None and await self.presence.any(session_id)

    async def emit_outbound(self, session_id: str, outs: list[Outbound]) -> None:
        for out in outs:
            for message in rasa_messages(out):
                await self.sio.emit("bot_uttered", message, room=room_of(session_id))

    async def deliver(self, ref: ConversationRef, outs: list[Outbound]) -> bool:
        """The hub's push: emit to every tab of the session; False (kept pending) when none is connected."""
        if ref.channel != CHANNEL or not await self.connected(ref.user_id):
            return False
        await self.emit_outbound(ref.user_id, outs)
        return True

    async def error(self, sid: str, code: str, **fmt: Any) -> dict[str, Any]:
        message = ERRORS[code].format(**fmt)
        await self.sio.emit("govbot_error", {"code": code, "message": message}, room=sid)
        return {"ok": False, "error": code, "message": message}

    def _session_of(self, sid: str, data: Any) -> Optional[str]:
        asked = data.get("session_id") if isinstance(data, dict) else None
        if isinstance(asked, str) and SESSION_RE.match(asked):
            return asked
        return self._sessions.get(sid)

    async def _join(self, sid: str, session_id: str) -> None:
        old = self._sessions.get(sid)
        if old == session_id:
            return
        if old:
            await self.sio.leave_room(sid, room_of(old))
            if self.presence is not None:
                await self.presence.leave(old, sid)
        self._sessions[sid] = session_id
        await self.sio.enter_room(sid, room_of(session_id))
        if self.presence is not None:
            await self.presence.join(session_id, sid)

    def _rate_ok(self, session_id: str) -> bool:
        now = time.monotonic()
        recent = self._recent.setdefault(session_id, deque())
        while recent and now - recent[0] > RATE_WINDOW_S:
            recent.popleft()
        if len(recent) >= RATE_MAX_MESSAGES:
            return False
        recent.append(now)
        return True

    def label_payload(self, text: str) -> Optional[str]:
        """What a button payload such as `/inform{"service":"passport"}` showed as, for history and echoes."""
        m = PAYLOAD_RE.match(text.strip())
        if not m:
            return None
        intent, raw = m.group(1), m.group(2)
        if intent in INTENT_LABELS and not raw:
            return INTENT_LABELS[intent]
        try:
            slots = json.loads(raw) if raw else {}
        except ValueError:
            return None
        corpus = self._corpus()
        if isinstance(slots, dict) and corpus is not None:
            if isinstance(slots.get("service"), str) and slots["service"] in corpus.guides:
                return corpus.guides[slots["service"]].name
            if isinstance(slots.get("situation"), str):
                if slots["situation"] == "all":
                    return "不确定/全部情形"
                names = {s.name for g in corpus.guides.values() for s in g.situations if s.id == slots["situation"]}
                if len(names) == 1:
                    return names.pop()
        return "（已选择）"

    @staticmethod
    def metadata(data: dict[str, Any]) -> dict[str, Any]:
        """What of the client's customData goes to the hub (and on to Rasa): known keys, bounded."""
        raw: Any = data.get("customData")
        if raw is None:
            raw = data.get("metadata")
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except ValueError:
                raw = None
        if not isinstance(raw, dict):
            return {}
        out: dict[str, Any] = {}
        for key, limit in (("region", 20), ("language", 10), ("page", 300)):
            value = raw.get(key)
            if isinstance(value, str) and value.strip():
                out[key] = value.strip()[:limit]
        return out

    # -- socket.io handlers ----------------------------------------------------------------------------------------
    def _register(self) -> None:
        sio = self.sio

        @sio.on("connect")
        async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> bool:
            return True

        @sio.on("disconnect")
        async def disconnect(sid: str, *reason: Any) -> None:
            session_id = self._sessions.pop(sid, None)
            if session_id and self.presence is not None:
                try:
                    await self.presence.leave(session_id, sid)
                except Exception:  # noqa: BLE001 - Redis away: the key expires on its own
                    log.warning("could not clear presence of a widget socket", exc_info=True)
            if session_id and session_id not in self._sessions.values():
                self._recent.pop(session_id, None)
                lock = self._locks.get(session_id)
                if lock is not None and not lock.locked():
                    del self._locks[session_id]

        @sio.on("session_request")
        async def session_request(sid: str, data: Any = None) -> None:
            asked = data.get("session_id") if isinstance(data, dict) else None
            session_id = asked if isinstance(asked, str) and SESSION_RE.match(asked) else uuid.uuid4().hex
            await self._join(sid, session_id)
            await sio.emit("session_confirm", session_id, room=sid)

        @sio.on("user_uttered")
        async def user_uttered(sid: str, data: Any = None) -> dict[str, Any]:
            if not isinstance(data, dict):
                return await self.error(sid, "bad_request")
            session_id = self._session_of(sid, data)
            if not session_id:
                return await self.error(sid, "no_session")
            await self._join(sid, session_id)
            message = data.get("message")
            if message is None:
                message = ""
            if not isinstance(message, str):
                return await self.error(sid, "bad_request")
            if not message.strip():
                return await self.error(sid, "empty")
            if len(message.strip()) > self.max_chars:
                return await self.error(sid, "too_long", limit=self.max_chars)
            if not self._rate_ok(session_id):
                return await self.error(sid, "rate_limited")
            display = data.get("display") if isinstance(data.get("display"), str) else None
            await sio.emit("govbot_echo", {"text": message, "display": (display or self.label_payload(message)),
                                           "created_at": datetime.now().astimezone().isoformat()},
                           room=room_of(session_id), skip_sid=sid)
            from connectors.hub import Inbound

            inbound = Inbound(channel=CHANNEL, user_id=session_id, text=message, metadata=self.metadata(data))
            lock = self._locks.setdefault(session_id, asyncio.Lock())
            try:
                async with lock:
                    outs = await self.hub.receive(inbound)
                    await self.emit_outbound(session_id, outs)
            except ValueError as exc:  # the hub's own validation (empty/oversize)
                log.info("web message refused: %s", exc)
                return await self.error(sid, "bad_request")
            except Exception:
                log.exception("web message failed (session %s…)", session_id[:6])
                return await self.error(sid, "busy")
            return {"ok": True, "messages": len(outs)}

        @sio.on("govbot_history")
        async def history(sid: str, data: Any = None) -> dict[str, Any]:
            session_id = self._session_of(sid, data)
            if not session_id:
                return {"ok": False, "error": "no_session", "message": ERRORS["no_session"]}
            await self._join(sid, session_id)
            items = await self.hub.history(CHANNEL, session_id, limit=HISTORY_LIMIT)
            status = await self.hub.status(CHANNEL, session_id)
            return {"ok": True, "messages": [history_item(i, self.label_payload) for i in items], "status": status}

        @sio.on("govbot_status")
        async def status(sid: str, data: Any = None) -> dict[str, Any]:
            session_id = self._session_of(sid, data)
            if not session_id:
                return {"ok": False, "error": "no_session", "message": ERRORS["no_session"]}
            return {"ok": True, "status": await self.hub.status(CHANNEL, session_id)}

        @sio.on("govbot_rate")
        async def rate(sid: str, data: Any = None) -> dict[str, Any]:
            session_id = self._session_of(sid, data)
            if not session_id:
                return await self.error(sid, "no_session")
            score = data.get("score") if isinstance(data, dict) else None
            message_id = data.get("message_id") if isinstance(data, dict) else None
            if isinstance(score, bool) or not isinstance(score, int) or score not in SCORE_LABELS:
                return await self.error(sid, "bad_score")
            if message_id is not None and (isinstance(message_id, bool) or not isinstance(message_id, int)):
                return await self.error(sid, "bad_request")
            try:
                await self.hub.rate(CHANNEL, session_id, score, message_id)
            except ValueError as exc:  # no conversation yet, or a message of another conversation
                return await self.error(sid, "rate_failed", reason=str(exc).split(" / ")[0])
            return {"ok": True, "score": score, "label": SCORE_LABELS[score], "message": "感谢您的评价！"}
