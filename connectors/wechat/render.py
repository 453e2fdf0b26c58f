"""Bot, clerk and system messages as WeChat plain text: buttons as numbered lines, 2048-byte parts."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Any, Protocol

MAX_BYTES = 2048  # WeChat's limit for one text message (passive reply or customer-service message), UTF-8
CHOOSE = "回复数字选择："
CLERK_PREFIX = "【人工客服】"
_CN_DIGITS = {"一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10}
_NUMBER = re.compile(r"^\s*(?:第\s*)?(\d{1,2}|[一二三四五六七八九十])\s*(?:个|项|条)?\s*[.。、,，!！]?\s*$")


class OutboundLike(Protocol):
    """What rendering needs of ``connectors.hub.Outbound``."""

    @property
    def sender_kind(self) -> str: ...
    @property
    def text(self) -> str | None: ...
    @property
    def buttons(self) -> list[dict[str, Any]]: ...
    @property
    def custom(self) -> dict[str, Any] | None: ...


def render(messages: Sequence[OutboundLike]) -> tuple[str, list[str] | None]:
    """The messages as one plain text, and the payloads of the buttons shown in it (None: no buttons shown).

    Every message contributes its text (a card's or handoff's text already holds the rendered content; a
    status message without text contributes nothing). Buttons become numbered lines under 「回复数字选择：」;
    only the last message with buttons is numbered (a citizen's number then means one thing), earlier ones
    are listed with bullets.
    """
    last_with_buttons = max((i for i, m in enumerate(messages) if _buttons(m)), default=-1)
    blocks: list[str] = []
    payloads: list[str] | None = None
    for i, m in enumerate(messages):
        lines: list[str] = []
        text = (m.text or "").strip()
        if text:
            lines.append(CLERK_PREFIX + text if m.sender_kind == "clerk" else text)
        buttons = _buttons(m)
        if buttons and i == last_with_buttons:
            lines.append(CHOOSE)
            lines.extend(f"{n}. {title}" for n, (title, _) in enumerate(buttons, 1))
            payloads = [payload for _, payload in buttons]
        elif buttons:
            lines.extend(f"· {title}" for title, _ in buttons)
        if lines:
            blocks.append("\n".join(lines))
    return "\n\n".join(blocks), payloads


def _buttons(m: OutboundLike) -> list[tuple[str, str]]:
    out = []
    for b in m.buttons or []:
        title = str(b.get("title") or "").strip()
        payload = str(b.get("payload") or title).strip()
        if title and payload:
            out.append((title, payload))
    return out


def numbered(intro: str, choices: Sequence[str]) -> str:
    """``intro`` followed by ``choices`` as numbered lines (the welcome's hot questions)."""
    return "\n".join([intro, CHOOSE, *(f"{n}. {c}" for n, c in enumerate(choices, 1))])


def choice(text: str, payloads: Sequence[str] | None) -> str | None:
    """The payload a reply of just a number (「1」「１」「第2个」「三」) picks from the last shown buttons."""
    if not payloads:
        return None
    m = _NUMBER.match(unicodedata.normalize("NFKC", text))
    if not m:
        return None
    token = m.group(1)
    n = int(token) if token.isdigit() else _CN_DIGITS[token]
    return payloads[n - 1] if 1 <= n <= len(payloads) else None


def split(text: str, limit: int = MAX_BYTES) -> list[str]:
    """``text`` in parts of at most ``limit`` UTF-8 bytes, cut on character boundaries only.

    A part ends at the last line break that keeps it at least half full, else exactly at the byte limit's
    character boundary; parts are stripped of the surrounding blank lines, empty parts dropped.
    """
    if limit < 4:
        raise ValueError("limit must hold one UTF-8 character")
    parts: list[str] = []
    rest = text.strip()
    while rest:
        data = rest.encode("utf-8")
        if len(data) <= limit:
            parts.append(rest)
            break
        cut = limit
        while cut > 0 and (data[cut] & 0xC0) == 0x80:  # never inside a multi-byte character
            cut -= 1
        head = data[:cut].decode("utf-8")
        newline = head.rfind("\n")
        if newline > 0 and len(head[:newline].encode("utf-8")) >= limit // 2:
            head = head[:newline]
        piece = head.strip()
        if piece:
            parts.append(piece)
        rest = rest[len(head) :].strip()
    return parts

