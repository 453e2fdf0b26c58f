"""The WeChat server API the connector calls: access_token (cached once for all gateway processes in the shared
KV store) and customer-service text messages (客服消息)."""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import time
from typing import Any

import anyio
import httpx

from .kvstore import AsyncKV

log = logging.getLogger("govbot.wechat")

TOKEN_EARLY_S = 600.0  # refresh this long before expires_in runs out (never later than halfway)
TOKEN_LOCK_S = 15.0  # one process fetches a token at a time; the others wait for it this long at most
INVALID_TOKEN = {40001, 40014, 42001}  # invalid credential / invalid token / token expired
OUT_OF_WINDOW = 45015  # the citizen has not written within 48 hours
QUOTA = 45047  # too many customer-service messages since the citizen's last message


class Sent(enum.Enum):
    OK = "ok"
    OUT_OF_WINDOW = "out_of_window"  # 45015: keep it for the citizen's next message
    QUOTA = "quota"  # 45047: idem
    FAILED = "failed"  # any other error (network, permissions, IP whitelist 40164 …)
    NOT_CONFIGURED = "not_configured"  # no AppID/AppSecret: there is no API to call


class WeChatError(RuntimeError):
    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(f"WeChat API error {errcode}: {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg


class WeChatAPI:
    """Client of ``{api_base}/cgi-bin/...``. Every gateway process shares one access_token through the KV store:
    only one process fetches a new one (a new token retires the old one within minutes, so processes fetching
    on their own would keep invalidating each other's)."""

    def __init__(self, api_base: str, appid: str, secret: str, kv: AsyncKV, *, timeout: float = 5.0) -> None:
        self.base = api_base.rstrip("/")
        self.appid = appid
        self.secret = secret
        self.kv = kv
        self.timeout = timeout
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._token_key = kv.key("token", appid)
        self._lock_key = kv.key("token-lock", appid)

    @property
    def configured(self) -> bool:
        return bool(self.appid and self.secret)

    def _http(self) -> httpx.AsyncClient:
        """One pooled client per event loop (a client's connections belong to the loop that opened them)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            self._client = httpx.AsyncClient(timeout=self.timeout, trust_env=False)
            self._client_loop = loop
        return self._client

    async def aclose(self) -> None:
        if self._client is not None and self._client_loop is asyncio.get_running_loop():
            await self._client.aclose()
        self._client = None

    # --- access_token ---------------------------------------------------------------------------------------
    async def access_token(self, *, invalid: str | None = None) -> str:
        """A valid access_token: the shared cached one, or a new one when it is due for refresh (or is ``invalid``,
        i.e. WeChat just refused it). Raises WeChatError / httpx.HTTPError when WeChat gives none."""
        deadline = time.monotonic() + TOKEN_LOCK_S
        while True:
            got = await self.kv.get(self._token_key)
            cached: dict[str, Any] = got if isinstance(got, dict) else {}
            now = time.time()
            usable = bool(cached.get("token")) and cached.get("token") != invalid and cached.get("expires_at", 0) > now
            if usable and cached.get("refresh_at", 0) > now:
                return str(cached["token"])
            if await self.kv.add_once(self._lock_key, TOKEN_LOCK_S):
                try:
                    again = await self.kv.get(self._token_key)  # someone may have refreshed meanwhile
                    if (isinstance(again, dict) and again.get("token") and again.get("token") != invalid
                            and again.get("refresh_at", 0) > time.time()):
                        return str(again["token"])
                    return await self._fetch_token()
                finally:
                    await self.kv.delete(self._lock_key)
            if usable:  # still valid: use it while another process refreshes
                return str(cached["token"])
            if time.monotonic() > deadline:  # the fetching process died: fetch ourselves
                return await self._fetch_token()
            await anyio.sleep(0.1)

    async def _fetch_token(self) -> str:
        r = await self._http().get(f"{self.base}/cgi-bin/token", params={
            "grant_type": "client_credential", "appid": self.appid, "secret": self.secret})
        data = _json(r)
        if "access_token" not in data:
            raise WeChatError(int(data.get("errcode", -1)), str(data.get("errmsg", r.text[:200])))
        token = str(data["access_token"])
        expires_in = float(data.get("expires_in", 7200))
        now = time.time()
        early = min(TOKEN_EARLY_S, expires_in / 2)
        await self.kv.set(self._token_key, {"token": token, "expires_at": now + expires_in - 30,
                                            "refresh_at": now + expires_in - early}, expires_in)
        log.info("wechat: new access_token for %s (expires in %.0f s)", self.appid, expires_in)
        return token

    # --- customer-service messages ----------------------------------------------------------------------------
    async def send_text(self, openid: str, content: str) -> Sent:
        """Sends one customer-service text message. A refused access_token (40001/42001) is refreshed and the
        call retried once."""
        if not self.configured:
            return Sent.NOT_CONFIGURED
        body = json.dumps({"touser": openid, "msgtype": "text", "text": {"content": content}},
                          ensure_ascii=False).encode("utf-8")
        invalid: str | None = None
        try:
            for _attempt in range(2):
                token = await self.access_token(invalid=invalid)
                r = await self._http().post(f"{self.base}/cgi-bin/message/custom/send",
                                            params={"access_token": token}, content=body,
                                            headers={"Content-Type": "application/json; charset=utf-8"})
                errcode = int(_json(r).get("errcode", 0))
                if errcode in INVALID_TOKEN and invalid is None:
                    invalid = token
                    continue
                break
        except (httpx.HTTPError, WeChatError, ValueError) as exc:
            log.warning("wechat: customer-service message to %s not sent: %s", mask(openid), exc)
            return Sent.FAILED
        if errcode == 0:
            return Sent.OK
        if errcode == OUT_OF_WINDOW:
            return Sent.OUT_OF_WINDOW
        if errcode == QUOTA:
            return Sent.QUOTA
        log.warning("wechat: customer-service message to %s refused: errcode %s", mask(openid), errcode)
        return Sent.FAILED


def _json(r: httpx.Response) -> dict[str, Any]:
    try:
        data = r.json()
    except ValueError as exc:
        raise ValueError(f"WeChat API answered HTTP {r.status_code} without JSON") from exc
    if not isinstance(data, dict):
        raise ValueError(f"WeChat API answered HTTP {r.status_code} with {type(data).__name__}")
    return data


def mask(openid: str) -> str:
    """An openid for logs: enough to correlate, not the whole identity."""
    return openid[:6] + "…" if len(openid) > 6 else "…"
