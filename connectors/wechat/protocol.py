"""The XML of WeChat callbacks and passive replies."""

from __future__ import annotations

import time
from html import escape
from xml.parsers import expat


class BadXml(ValueError):
    """The body is not a WeChat callback document."""


def parse_xml(body: bytes) -> dict[str, str]:
    """A flat ``<xml><Field>value</Field>…</xml>`` document as a dict (the text of each direct child).

    Parsed with expat directly; document type and entity declarations are refused outright: WeChat never
    sends them, and refusing them closes entity-expansion and external-entity attacks.
    """
    if not body.strip():
        raise BadXml("empty body / 请求体为空")
    fields: dict[str, str] = {}
    stack: list[str] = []
    buf: list[str] = []
    nested: set[str] = set()

    def refuse(*_: object) -> None:
        raise BadXml("DOCTYPE/ENTITY not allowed / 不接受 DOCTYPE 或实体声明")

    def start(name: str, _attrs: object) -> None:
        if not stack and name != "xml":
            raise BadXml(f"root element must be <xml>, got <{name}> / 根元素应为 <xml>")
        if len(stack) == 2:
            nested.add(stack[1])
        stack.append(name)
        buf.clear()

    def end(name: str) -> None:
        stack.pop()
        if len(stack) == 1 and name not in fields:
            fields[name] = "" if name in nested else "".join(buf).strip()
        buf.clear()

    def chars(data: str) -> None:
        if len(stack) == 2:
            buf.append(data)

    parser = expat.ParserCreate(encoding="utf-8")
    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    try:
        parser.Parse(body, True)
    except expat.ExpatError as exc:
        raise BadXml(f"malformed XML / XML 格式错误: {exc}") from exc
    return fields


def cdata(text: str) -> str:
    """``text`` as CDATA (a literal ``]]>`` split across two sections); control characters XML forbids dropped."""
    clean = "".join(ch for ch in text if ch in "\t\n\r" or ord(ch) >= 0x20)
    return "<![CDATA[" + clean.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def text_reply(to_user: str, from_user: str, content: str, now: int | None = None) -> str:
    """A passive text reply (``MsgType text``)."""
    return (
        "<xml>"
        f"<ToUserName>{cdata(to_user)}</ToUserName>"
        f"<FromUserName>{cdata(from_user)}</FromUserName>"
        f"<CreateTime>{int(now if now is not None else time.time())}</CreateTime>"
        "<MsgType><![CDATA[text]]></MsgType>"
        f"<Content>{cdata(content)}</Content>"
        "</xml>"
    )


def encrypted_envelope(encrypt: str, signature: str, timestamp: str, nonce: str) -> str:
    """The safe-mode reply wrapping an encrypted passive reply."""
    return (
        "<xml>"
        f"<Encrypt>{cdata(encrypt)}</Encrypt>"
        f"<MsgSignature>{cdata(signature)}</MsgSignature>"
        f"<TimeStamp>{escape(timestamp)}</TimeStamp>"
        f"<Nonce>{cdata(nonce)}</Nonce>"
        "</xml>"
    )
