"""Talking to Rasa: the REST channel for each citizen turn, the HTTP API to hand a conversation back.

Every failure (refused, timed out, 5xx, not JSON) becomes `BotUnavailable`, which the hub turns into
「系统繁忙」 + a ticket; the citizen's message is already stored by then."""

from __future__ import annotations

import asyncio
from typing import Any, Optional

import httpx

from bot.runner import HAND_BACK_EVENTS


class BotUnavailable(RuntimeError):
    pass


class RasaClient:
    def __init__(self, base_url: str, token: Optional[str], timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._client: Optional[httpx.AsyncClient] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None

    @property
    def client(self) -> httpx.AsyncClient:
        # One connection pool per event loop (the server has one; tests may start several in turn).
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client = httpx.AsyncClient(base_url=self.base_url, timeout=httpx.Timeout(self.timeout, connect=3.0))
            self._loop = loop
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def send(self, sender: str, text: str, metadata: dict[str, Any]) -> list[dict[str, Any]]:
        """One turn through the REST channel; the bot's messages in order."""
        try:
            resp = await self.client.post("/webhooks/rest/webhook",
                                          json={"sender": sender, "message": text, "metadata": metadata})
        except httpx.HTTPError as exc:
            raise BotUnavailable(f"Rasa unreachable: {type(exc).__name__}: {exc}") from exc
        if resp.status_code != 200:
            raise BotUnavailable(f"Rasa answered {resp.status_code}: {resp.text[:200]}")
        try:
            body = resp.json()
        except ValueError as exc:
            raise BotUnavailable("Rasa answered something that is not JSON") from exc
        if not isinstance(body, list):
            raise BotUnavailable(f"Rasa answered {type(body).__name__}, expected a list")
        messages = [m for m in body if isinstance(m, dict)]
        if not messages:
            # Our bot always says something; silence means a failed turn (Rasa answers 200 and [] when the action
            # server is down, measured) or a paused conversation the hub thought was with the bot.
            raise BotUnavailable("Rasa answered no message (action server down?)")
        return messages

    async def hand_back(self, sender: str) -> None:
        """Resume a paused conversation (bot/CONTRACT.md: resume, handed_off=false, action_listen)."""
        params = {"token": self.token} if self.token else {}
        try:
            resp = await self.client.post(f"/conversations/{sender}/tracker/events", params=params,
                                          json=HAND_BACK_EVENTS)
        except httpx.HTTPError as exc:
            raise BotUnavailable(f"Rasa unreachable: {type(exc).__name__}: {exc}") from exc
        if resp.status_code != 200:
            raise BotUnavailable(f"Rasa answered {resp.status_code} to the hand-back: {resp.text[:200]}")

    async def healthy(self) -> bool:
        try:
            resp = await self.client.get("/", timeout=2.0)
        except httpx.HTTPError:
            return False
        return resp.status_code == 200
