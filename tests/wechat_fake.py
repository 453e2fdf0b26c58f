"""A local stand-in for WeChat's API server (api.weixin.qq.com): a real HTTP server on loopback, in a thread,
serving the real paths with WeChat's JSON and errcode semantics, for the connector's customer-service messages.

- ``GET /cgi-bin/token?grant_type=client_credential&appid=&secret=`` → ``{"access_token", "expires_in"}``, or
  40002 (bad grant_type), 40013 (bad AppID), 40125 (bad AppSecret);
- ``POST /cgi-bin/message/custom/send?access_token=`` with ``{"touser", "msgtype": "text", "text": {"content"}}``
  → ``{"errcode": 0, "errmsg": "ok"}``, or 41001 (no token), 40001 (invalid token), 42001 (expired token),
  47001 (malformed JSON), 40008 (bad msgtype), 44004 (empty content), 45002 (content over 2048 bytes),
  45015 (citizen outside the 48-hour window), 45047 (quota).

Tests steer it: ``invalidate_tokens()`` (the next send gets 40001 until a new token is fetched), ``expire_tokens()``
(42001), ``close_window(openid)`` (45015 for that citizen until ``open_window``), ``fail_next(errcode)``; and read
what it got: ``token_calls``, ``sent`` (every accepted message), ``send_calls`` (every attempt, with its errcode).
"""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

ERRMSG = {
    0: "ok",
    40001: "invalid credential, access_token is invalid or not latest",
    40002: "invalid grant_type",
    40008: "invalid message type",
    40013: "invalid appid",
    40125: "invalid appsecret",
    41001: "access_token missing",
    42001: "access_token expired",
    44004: "empty content",
    45002: "content size out of limit",
    45015: "response out of time limit or subscription is canceled",
    45047: "out of response count limit",
    47001: "data format error",
}


@dataclass
class FakeWeChat:
    appid: str
    secret: str
    expires_in: int = 7200
    token_calls: list[dict[str, str]] = field(default_factory=list)
    send_calls: list[dict[str, Any]] = field(default_factory=list)  # every attempt: {"token", "body", "errcode"}
    sent: list[dict[str, Any]] = field(default_factory=list)  # accepted messages (the JSON body)
    valid: set[str] = field(default_factory=set)
    expired: set[str] = field(default_factory=set)
    closed: set[str] = field(default_factory=set)
    failures: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def base(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- steering ------------------------------------------------------------------------------------------------
    def invalidate_tokens(self) -> None:
        with self.lock:
            self.valid.clear()

    def expire_tokens(self) -> None:
        with self.lock:
            self.expired |= self.valid
            self.valid.clear()

    def close_window(self, openid: str) -> None:
        with self.lock:
            self.closed.add(openid)

    def open_window(self, openid: str) -> None:
        with self.lock:
            self.closed.discard(openid)

    def fail_next(self, errcode: int) -> None:
        with self.lock:
            self.failures.append(errcode)

    def texts(self, openid: str | None = None) -> list[str]:
        with self.lock:
            return [m["text"]["content"] for m in self.sent if openid is None or m["touser"] == openid]

    # -- the API -------------------------------------------------------------------------------------------------
    def token(self, q: dict[str, str]) -> dict[str, Any]:
        with self.lock:
            self.token_calls.append(q)
            if q.get("grant_type") != "client_credential":
                return _err(40002)
            if q.get("appid") != self.appid:
                return _err(40013)
            if q.get("secret") != self.secret:
                return _err(40125)
            token = secrets.token_urlsafe(24)
            self.valid.add(token)
            return {"access_token": token, "expires_in": self.expires_in}

    def send(self, q: dict[str, str], raw: bytes) -> dict[str, Any]:
        with self.lock:
            token = q.get("access_token", "")
            call: dict[str, Any] = {"token": token, "body": raw.decode("utf-8", "replace")}
            self.send_calls.append(call)
            errcode = self._check_send(token, raw)
            call["errcode"] = errcode
            return _err(errcode)

    def _check_send(self, token: str, raw: bytes) -> int:
        if not token:
            return 41001
        if token in self.expired:
            return 42001
        if token not in self.valid:
            return 40001
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return 47001
        if not isinstance(body, dict) or not isinstance(body.get("touser"), str):
            return 47001
        if body.get("msgtype") != "text":
            return 40008
        content = (body.get("text") or {}).get("content")
        if not isinstance(content, str) or not content:
            return 44004
        if len(content.encode("utf-8")) > 2048:
            return 45002
        if self.failures:
            return self.failures.pop(0)
        if body["touser"] in self.closed:
            return 45015
        self.sent.append(body)
        return 0

    # -- serving -------------------------------------------------------------------------------------------------
    def start(self) -> FakeWeChat:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, data: dict[str, Any]) -> None:
                body = json.dumps(data, ensure_ascii=False).encode("utf-8")
                self.send_response(200)  # WeChat answers errors with HTTP 200 and an errcode
                self.send_header("Content-Type", "application/json; encoding=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _query(self) -> tuple[str, dict[str, str]]:
                parts = urlsplit(self.path)
                return parts.path, {k: v[-1] for k, v in parse_qs(parts.query).items()}

            def do_GET(self) -> None:  # noqa: N802
                path, q = self._query()
                if path == "/cgi-bin/token":
                    self._reply(fake.token(q))
                else:
                    self.send_error(404)

            def do_POST(self) -> None:  # noqa: N802
                path, q = self._query()
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if path == "/cgi-bin/message/custom/send":
                    self._reply(fake.send(q, raw))
                else:
                    self.send_error(404)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True, name="fake-wechat").start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def _err(errcode: int) -> dict[str, Any]:
    return {"errcode": errcode, "errmsg": ERRMSG.get(errcode, "error")}
