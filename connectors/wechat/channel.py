"""The 公众号 callback (`/wechat`): verification, signed/encrypted messages, the 5-second rule, pushes.

One callback, start to end:
1. ``signature`` checked (403), body size (413), XML (400); with ``encrypt_type=aes`` (compatible and safe mode)
   ``msg_signature`` checked (403), the message decrypted and its AppID checked (403).
2. Deduplicated in the shared KV store by MsgId (events: FromUserName + CreateTime + Event): WeChat retries a
   callback it got no answer for within 5 s up to three times; only the first is processed. A retry waits for
   the first one's outcome and returns the same passive reply, or ``success`` when that one answers by the API.
3. Text (and voice with ``Recognition``) goes to the hub. If the hub's answer is ready within the answer budget
   (4 s) it is the passive reply; otherwise the callback answers ``success`` and the answer follows as
   customer-service messages (客服消息) once ready.
4. Long answers: the first 2048-byte part is the passive reply, the rest follow as customer-service messages,
   sent after the HTTP response (so they arrive after it). Citizens of an account without the customer-service
   API (e.g. an unverified 订阅号) then still get the first part.
5. What the API cannot deliver (45015 outside the 48-hour window, 45047 quota, no AppSecret) waits: the hub keeps
   undelivered pushes pending and hands them back with the citizen's next message; late answers are kept in the
   KV store for that next message.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import PlainTextResponse, Response
from starlette.background import BackgroundTask

from connectors.config import GatewaySettings
from connectors.hub import ConversationRef, Hub, Inbound, Outbound

from . import render
from .api import Sent, WeChatAPI, mask
from .crypto import AppIdMismatch, CryptoError, MessageCrypto, check, sign
from .kvstore import AsyncKV, KVLike
from .protocol import BadXml, encrypted_envelope, parse_xml, text_reply

log = logging.getLogger("govbot.wechat")

ANSWER_BUDGET_S = 4.0  # WeChat waits 5 s for the passive reply; what takes longer goes by the API
SEEN_TTL_S = 24 * 3600.0  # how long a MsgId counts as seen (WeChat retries within ~15 s; longer stops replays)
OUTCOME_TTL_S = 600.0  # how long a retry can still get the first callback's passive reply
CHOICES_TTL_S = 7 * 24 * 3600.0  # how long a reply of just a number picks from the last shown buttons
LATE_TTL_S = 7 * 24 * 3600.0  # late answers the API could not deliver, kept for the citizen's next message

HOT_QUESTIONS = (
    "身份证丢了怎么补办",
    "办护照需要什么材料",
    "新生儿怎么上户口",
    "租房怎么提取住房公积金",
    "社保卡怎么办理",
)
WELCOME = ("您好，欢迎关注！我是政务智能问答助手，可以为您解答办事需要的材料、流程、费用、办理时限和地点。"
           "请直接输入您的问题，或看看大家常问的：")
VOICE_UNRECOGNISED = "抱歉，没能识别您的语音。请直接输入文字提问，例如「身份证丢了怎么补办」。"
UNSUPPORTED = "抱歉，目前只能识别文字和语音消息。请用文字描述您要咨询的事项，例如「护照怎么办理」。"
MENU_HINT = "请直接输入您想咨询的问题，例如「身份证丢了怎么补办」，我会尽快为您解答。"
EMPTY = "请输入您想咨询的问题，例如「身份证丢了怎么补办」。"
TOO_LONG = "您的消息有点长（{n} 字），请精简到 {limit} 字以内，或分几次发送。"
FAILED = "抱歉，系统暂时出了点问题，请稍后再试。"
NOT_CONFIGURED = "本系统未配置微信公众号 / WeChat official account is not configured"


@dataclass(frozen=True)
class Callback:
    """One verified, decrypted callback."""

    fields: dict[str, str]
    encrypted: bool
    nonce: str

    @property
    def openid(self) -> str:
        return self.fields.get("FromUserName", "")

    @property
    def account(self) -> str:
        return self.fields.get("ToUserName", "")


class WeChatChannel:
    def __init__(self, hub: Hub, settings: GatewaySettings, kv: KVLike, *, answer_budget_s: float = ANSWER_BUDGET_S,
                 hot_questions: Sequence[str] = HOT_QUESTIONS) -> None:
        if not settings.wechat_token:
            raise ValueError("GOVBOT_WECHAT_TOKEN is not set")
        self.hub = hub
        self.token = settings.wechat_token
        self.appid = settings.wechat_appid
        self.max_body = settings.max_body_bytes
        self.max_text = settings.max_text_chars
        self.crypto = MessageCrypto(settings.wechat_aes_key, settings.wechat_appid) if settings.wechat_aes_key else None
        if self.crypto is not None and not self.appid:
            raise ValueError("GOVBOT_WECHAT_APPID is needed with GOVBOT_WECHAT_AES_KEY (safe mode checks it)")
        self.kv = AsyncKV(kv, "wechat:" + (self.appid or "default"))
        self.api = WeChatAPI(settings.wechat_api_base, settings.wechat_appid, settings.wechat_secret,
                             AsyncKV(kv, "wechat"))
        self.budget = answer_budget_s
        self.hot_questions = list(hot_questions)
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- HTTP ------------------------------------------------------------------------------------------------------
    async def verify(self, request: Request) -> Response:
        """GET /wechat: WeChat's server check when the URL is saved in the 公众号 admin (answer ``echostr``)."""
        q = request.query_params
        self._check_signature(q.get("signature"), q.get("timestamp", ""), q.get("nonce", ""))
        echostr = q.get("echostr")
        if echostr is None:
            raise HTTPException(400, "缺少 echostr 参数 / echostr is missing")
        return PlainTextResponse(echostr)

    async def callback(self, request: Request) -> Response:
        """POST /wechat: one message or event from a citizen."""
        q = request.query_params
        timestamp, nonce = q.get("timestamp", ""), q.get("nonce", "")
        self._check_signature(q.get("signature"), timestamp, nonce)
        cb = self._open(await self._body(request), q.get("encrypt_type", ""), q.get("msg_signature"), timestamp, nonce)
        seen_key = self.kv.key("seen", self._dedup_id(cb.fields))
        outcome_key = self.kv.key("outcome", self._dedup_id(cb.fields))
        if not await self.kv.add_once(seen_key, SEEN_TTL_S):
            return await self._retry(cb, outcome_key)

        task = asyncio.create_task(self._process(cb))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        done, _ = await asyncio.wait({task}, timeout=self.budget)
        if task not in done:  # too slow for the passive reply: answer by the API when ready
            await self.kv.set(outcome_key, {"reply": None}, OUTCOME_TTL_S)
            log.info("wechat: answer for %s after the budget, will send by the API", mask(cb.openid))
            return PlainTextResponse("success", background=BackgroundTask(self._send_late, cb.openid, task))
        parts = task.result()
        if not parts:
            await self.kv.set(outcome_key, {"reply": None}, OUTCOME_TTL_S)
            return PlainTextResponse("success")
        await self.kv.set(outcome_key, {"reply": parts[0]}, OUTCOME_TTL_S)
        rest = BackgroundTask(self._send_parts, cb.openid, parts[1:]) if len(parts) > 1 else None
        return self._passive(cb, parts[0], background=rest)

    def _check_signature(self, signature: str | None, timestamp: str, nonce: str) -> None:
        if not check(signature, self.token, timestamp, nonce):
            log.warning("wechat: callback with a bad signature refused")
            raise HTTPException(403, "签名校验失败 / invalid signature")

    async def _body(self, request: Request) -> bytes:
        too_large = HTTPException(413, f"请求内容过大（上限 {self.max_body} 字节）/ request body too large")
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)

    def _open(self, body: bytes, encrypt_type: str, msg_signature: str | None, timestamp: str,
              nonce: str) -> Callback:
        """The callback's fields: parsed, and in compatible/safe mode verified and decrypted."""
        try:
            fields = parse_xml(body)
        except BadXml as exc:
            raise HTTPException(400, str(exc)) from exc
        encrypted = encrypt_type.lower() == "aes"
        if encrypted:
            if self.crypto is None:
                raise HTTPException(400, "收到加密消息，但未配置 EncodingAESKey（GOVBOT_WECHAT_AES_KEY） / "
                                         "encrypted callback but no EncodingAESKey configured")
            encrypt = fields.get("Encrypt")
            if not encrypt:
                raise HTTPException(400, "加密消息缺少 Encrypt 字段 / Encrypt is missing")
            if not check(msg_signature, self.token, timestamp, nonce, encrypt):
                log.warning("wechat: callback with a bad msg_signature refused")
                raise HTTPException(403, "消息签名校验失败 / invalid msg_signature")
            try:
                inner = self.crypto.decrypt(encrypt)
            except AppIdMismatch as exc:
                log.warning("wechat: encrypted callback for another AppID refused")
                raise HTTPException(403, "AppID 不匹配 / AppID mismatch") from exc
            except CryptoError as exc:
                raise HTTPException(400, f"无法解密消息 / cannot decrypt: {exc}") from exc
            try:
                fields = parse_xml(inner.encode("utf-8"))
            except BadXml as exc:
                raise HTTPException(400, str(exc)) from exc
        for required in ("FromUserName", "MsgType"):
            if not fields.get(required):
                raise HTTPException(400, f"消息缺少 {required} 字段 / {required} is missing")
        return Callback(fields, encrypted, nonce or secrets.token_hex(8))

    @staticmethod
    def _dedup_id(f: dict[str, str]) -> str:
        if f.get("MsgId"):
            return "msg:" + f["MsgId"]
        return "event:" + ":".join((f["FromUserName"], f.get("CreateTime", ""), f.get("Event", "")))

    async def _retry(self, cb: Callback, outcome_key: str) -> Response:
        """A repeat of a callback already taken: the same passive reply once known, else ``success``."""
        deadline = time.monotonic() + self.budget
        while True:
            outcome = await self.kv.get(outcome_key)
            if isinstance(outcome, dict):
                reply = outcome.get("reply")
                return self._passive(cb, reply) if isinstance(reply, str) and reply else PlainTextResponse("success")
            if time.monotonic() >= deadline:
                return PlainTextResponse("success")
            await asyncio.sleep(0.1)

    def _passive(self, cb: Callback, content: str, background: BackgroundTask | None = None) -> Response:
        xml = text_reply(cb.openid, cb.account, content)
        if cb.encrypted and self.crypto is not None:
            encrypt = self.crypto.encrypt(xml)
            timestamp = str(int(time.time()))
            xml = encrypted_envelope(encrypt, sign(self.token, timestamp, cb.nonce, encrypt), timestamp, cb.nonce)
        return Response(xml, media_type="application/xml", background=background)

    # -- messages --------------------------------------------------------------------------------------------------
    async def _process(self, cb: Callback) -> list[str]:
        """Everything to send for this callback, as ≤2048-byte parts (empty: nothing to say)."""
        f = cb.fields
        kind = f["MsgType"].lower()
        try:
            if kind == "text":
                return await self._ask(cb.openid, f.get("Content", ""), {}, f.get("MsgId"))
            if kind == "voice":
                heard = f.get("Recognition", "").strip()
                if not heard:
                    return await self._say(cb.openid, VOICE_UNRECOGNISED)
                return await self._ask(cb.openid, heard, {"input": "voice"}, f.get("MsgId"))
            if kind == "event":
                event = f.get("Event", "").lower()
                if event == "subscribe":
                    await self.kv.set(self.kv.key("choices", cb.openid), self.hot_questions, CHOICES_TTL_S)
                    return await self._say(cb.openid, render.numbered(WELCOME, self.hot_questions))
                if event == "click":
                    return await self._say(cb.openid, MENU_HINT)
                return []  # unsubscribe, menu links, scans, location reports …: nothing to say
            return await self._say(cb.openid, UNSUPPORTED)
        except Exception:
            log.exception("wechat: message from %s failed", mask(cb.openid))
            return render.split(FAILED)

    async def _say(self, openid: str, text: str) -> list[str]:
        """A reply of our own (not from the hub), after any late answers still waiting for this citizen."""
        return render.split("\n\n".join([*await self._take_late(openid), text]))

    async def _ask(self, openid: str, text: str, metadata: dict[str, Any], msgid: str | None) -> list[str]:
        text = text.strip()
        if not text:
            return await self._say(openid, EMPTY)
        if len(text) > self.max_text:
            return await self._say(openid, TOO_LONG.format(n=len(text), limit=self.max_text))
        choices_key = self.kv.key("choices", openid)
        picked = render.choice(text, await self.kv.get(choices_key))
        if picked is not None:
            text = picked
        try:
            messages = await self.hub.receive(Inbound(channel="wechat", user_id=openid, text=text,
                                                      metadata=metadata, external_id=msgid))
        except ValueError as exc:  # the hub's own text checks
            return await self._say(openid, f"抱歉，{str(exc).split(' / ')[0]}")
        content = await self._remember_choices(openid, messages)
        return render.split("\n\n".join(p for p in [*await self._take_late(openid), content] if p))

    async def _remember_choices(self, openid: str, messages: Sequence[Outbound]) -> str:
        """The messages' text; the buttons shown (or none) become what a number reply picks from."""
        content, payloads = render.render(messages)
        if content:
            await self._set_choices(openid, payloads)
        return content

    async def _set_choices(self, openid: str, payloads: list[str] | None) -> None:
        """What a number reply picks from: the buttons just shown, or nothing."""
        key = self.kv.key("choices", openid)
        if payloads:
            await self.kv.set(key, payloads, CHOICES_TTL_S)
        else:
            await self.kv.delete(key)

    # -- customer-service messages ----------------------------------------------------------------------------------
    async def _send_late(self, openid: str, task: asyncio.Task[list[str]]) -> None:
        """After ``success``: wait for the answer and send it by the API."""
        try:
            parts = await task
        except Exception:
            log.exception("wechat: late answer for %s failed", mask(openid))
            return
        await self._send_parts(openid, parts)

    async def _send_parts(self, openid: str, parts: list[str]) -> None:
        """Customer-service messages, in order; what cannot be sent now waits for the citizen's next message."""
        for i, part in enumerate(parts):
            result = await self.api.send_text(openid, part)
            if result is not Sent.OK:
                log.info("wechat: %d part(s) for %s kept for later (%s)", len(parts) - i, mask(openid), result.value)
                await self._keep_late(openid, parts[i:])
                return

    async def _keep_late(self, openid: str, parts: list[str]) -> None:
        key = self.kv.key("late", openid)
        kept = await self.kv.get(key)
        await self.kv.set(key, [*(kept if isinstance(kept, list) else []), *parts], LATE_TTL_S)

    async def _take_late(self, openid: str) -> list[str]:
        kept = await self.kv.take(self.kv.key("late", openid))  # atomic: two turns cannot both send them
        return [str(p) for p in kept] if isinstance(kept, list) else []

    async def deliver(self, conv: ConversationRef, messages: list[Outbound]) -> bool:
        """The hub's push (clerk replies, status changes, answers after a handoff). False keeps them pending:
        outside the 48-hour window (45015), over the quota (45047), no API configured, WeChat unreachable."""
        content, payloads = render.render(messages)
        if not content:
            return True
        if not self.api.configured:
            return False
        parts = render.split(content)
        for i, part in enumerate(parts):
            result = await self.api.send_text(conv.user_id, part)
            if result is not Sent.OK:
                if i:  # the first parts went out: keep only the rest, not the whole push again
                    await self._keep_late(conv.user_id, parts[i:])
                    return True
                log.info("wechat: push to %s kept pending (%s)", mask(conv.user_id), result.value)
                return False
        await self._set_choices(conv.user_id, payloads)
        return True

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self.api.aclose()

