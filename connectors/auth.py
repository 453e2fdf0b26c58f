"""Clerk and admin login: argon2-hashed passwords, a signed session cookie, CSRF protection, roles.

The cookie holds the clerk id, a per-session CSRF token and a fingerprint of the password hash (changing the
password or deactivating the account ends every session). Unsafe requests must echo the CSRF token in the
`X-CSRF-Token` header, which a cross-site form cannot do; the cookie is also SameSite=Strict."""

from __future__ import annotations

import secrets
import time
from collections import defaultdict, deque
from typing import Any, Optional

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import HTTPException, Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from .store import Clerk
from .tickets import Actor

COOKIE = "govbot_session"
SESSION_SECONDS = 12 * 3600
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
MAX_FAILURES, FAILURE_WINDOW_S = 5, 300

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    check_password_rules(password)
    return _hasher.hash(password)


def check_password_rules(password: str) -> None:
    if len(password) < 8:
        raise ValueError("密码至少 8 位 / password must have at least 8 characters")
    if len(password) > 128:
        raise ValueError("密码太长 / password too long")


def verify_password(hashed: str, password: str) -> bool:
    try:
        return _hasher.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False


def clerk_view(c: Clerk) -> dict[str, Any]:
    return {"id": c.id, "username": c.username, "role": c.role, "department": c.department,
            "display_name": c.display_name, "active": c.active}


class Auth:
    def __init__(self, factory: sessionmaker[Session], secret: str, secure_cookie: bool = False) -> None:
        self.factory = factory
        self.signer = URLSafeTimedSerializer(secret, salt="govbot-desk-session")
        self.secure_cookie = secure_cookie
        self._failures: dict[str, deque[float]] = defaultdict(deque)

    # -- login / logout --------------------------------------------------------------------------------------------
    def login(self, username: str, password: str, response: Response, client: str = "") -> dict[str, Any]:
        key = f"{username}|{client}"
        recent = self._failures[key]
        now = time.monotonic()
        while recent and now - recent[0] > FAILURE_WINDOW_S:
            recent.popleft()
        if len(recent) >= MAX_FAILURES:
            raise HTTPException(429, "登录失败次数过多，请 5 分钟后再试 / too many failed logins, retry later")
        with self.factory() as s:
            clerk = s.scalar(select(Clerk).where(Clerk.username == username))
            ok = clerk is not None and clerk.active and verify_password(clerk.password_hash, password)
            if not ok or clerk is None:
                recent.append(now)
                raise HTTPException(401, "用户名或密码错误 / wrong username or password")
            if _hasher.check_needs_rehash(clerk.password_hash):  # stronger parameters since it was set
                clerk.password_hash = _hasher.hash(password)
                s.commit()
            self._failures.pop(key, None)
            csrf = secrets.token_urlsafe(24)
            token = self.signer.dumps({"cid": clerk.id, "csrf": csrf, "fp": clerk.password_hash[-16:]})
            response.set_cookie(COOKIE, token, max_age=SESSION_SECONDS, httponly=True, samesite="strict",
                                secure=self.secure_cookie, path="/")
            return {"clerk": clerk_view(clerk), "csrf": csrf}

    @staticmethod
    def logout(response: Response) -> None:
        response.delete_cookie(COOKIE, path="/")

    # -- who is asking ---------------------------------------------------------------------------------------------
    def session(self, cookie: Optional[str]) -> Optional[tuple[Clerk, str]]:
        """The clerk and CSRF token of a session cookie, or None if absent, forged, expired or revoked."""
        if not cookie:
            return None
        try:
            data = self.signer.loads(cookie, max_age=SESSION_SECONDS)
        except BadSignature:
            return None
        with self.factory() as s:
            clerk = s.get(Clerk, data.get("cid"))
            if clerk is None or not clerk.active or clerk.password_hash[-16:] != data.get("fp"):
                return None
            return clerk, str(data.get("csrf"))

    def actor(self, request: Request) -> tuple[Actor, str]:
        found = self.session(request.cookies.get(COOKIE))
        if found is None:
            raise HTTPException(401, "请先登录 / login required")
        clerk, csrf = found
        if request.method not in SAFE_METHODS:
            sent = request.headers.get("x-csrf-token", "")
            if not secrets.compare_digest(sent.encode("utf-8", "replace"), csrf.encode("utf-8")):
                raise HTTPException(403, "CSRF 校验失败，请刷新页面后重试 / CSRF token missing or wrong")
        return Actor.of(clerk), csrf

    # FastAPI dependencies
    def require_clerk(self, request: Request) -> Actor:
        return self.actor(request)[0]

    def require_admin(self, request: Request) -> Actor:
        actor = self.actor(request)[0]
        if not actor.is_admin:
            raise HTTPException(403, "需要管理员权限 / admin role required")
        return actor


def create_clerk(factory: sessionmaker[Session], username: str, password: str, role: str = "clerk",
                 department: Optional[str] = None, display_name: Optional[str] = None) -> dict[str, Any]:
    """Create an account (CLI `govbot admin create-user` and the admin API)."""
    username = (username or "").strip()
    if not username or len(username) > 64:
        raise ValueError("用户名不能为空且不超过 64 字 / username must be 1..64 characters")
    if role not in ("clerk", "admin"):
        raise ValueError("角色只能是 clerk 或 admin / role must be clerk or admin")
    hashed = hash_password(password)
    with factory() as s, s.begin():
        if s.scalar(select(Clerk.id).where(Clerk.username == username)) is not None:
            raise ValueError(f"用户名“{username}”已存在 / username taken")
        clerk = Clerk(username=username, password_hash=hashed, role=role, department=department or None,
                      display_name=display_name or None, active=True)
        s.add(clerk)
        s.flush()
        return clerk_view(clerk)
