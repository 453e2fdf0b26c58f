"""The WeChat 公众号 connector against independent peers: wechatpy plays WeChat's server (signs and encrypts the
callbacks, verifies and decrypts our replies), `tests/wechat_fake.py` is WeChat's API server on loopback, the KV
store and the hub run on a real SQLite database."""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from wechatpy.crypto import PrpCrypto
from wechatpy.exceptions import InvalidAppIdException
from wechatpy.utils import WeChatSigner

from connectors.kv import KV
from connectors.store import open_database
from connectors.wechat import render
from connectors.wechat.api import Sent, WeChatAPI
from connectors.wechat.crypto import AppIdMismatch, CryptoError, MessageCrypto, aes_key, sign
from connectors.wechat.kvstore import AsyncKV
from connectors.wechat.protocol import BadXml, parse_xml, text_reply
from tests.wechat_fake import FakeWeChat

TOKEN = "govbotToken2024"
APPID = "wx1234567890abcdef"
SECRET = "s3cr3t-app-secret"
AES_KEY = base64.b64encode(os.urandom(32)).decode()[:-1]  # 43 characters, as the 公众号 admin generates it


def wechatpy_sign(*parts: str) -> str:
    signer = WeChatSigner()
    signer.add_data(*parts)
    return signer.signature


# -- crypto and XML, against wechatpy ------------------------------------------------------------------------------------
def test_signatures_match_wechatpy() -> None:
    assert sign(TOKEN, "1700000000", "nonce") == wechatpy_sign(TOKEN, "1700000000", "nonce")
    assert sign(TOKEN, "1", "n", "ENC==") == wechatpy_sign(TOKEN, "1", "n", "ENC==")


def test_aes_both_ways_with_wechatpy() -> None:
    ours = MessageCrypto(AES_KEY, APPID)
    theirs = PrpCrypto(aes_key(AES_KEY))
    text = "<xml><Content><![CDATA[身份证丢了怎么补办 🙂]]></Content></xml>"
    assert theirs.decrypt(ours.encrypt(text), APPID) == text
    assert ours.decrypt(theirs.encrypt(text, APPID).decode()) == text
    with pytest.raises(InvalidAppIdException):
        theirs.decrypt(ours.encrypt(text), "wxOTHER")
    with pytest.raises(AppIdMismatch):
        ours.decrypt(theirs.encrypt(text, "wxOTHER").decode())
    with pytest.raises(CryptoError):
        ours.decrypt("not base64!")
    with pytest.raises(CryptoError):
        MessageCrypto(base64.b64encode(os.urandom(32)).decode()[:-1], APPID).decrypt(ours.encrypt(text))
    with pytest.raises(ValueError):
        MessageCrypto("short", APPID)


def test_xml_parsing_refuses_what_wechat_never_sends() -> None:
    fields = parse_xml(b"<xml><Content><![CDATA[a]]]]><![CDATA[>b <c>]]></Content><MsgId>1</MsgId></xml>")
    assert fields == {"Content": "a]]>b <c>", "MsgId": "1"}
    bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><xml><C>&b;</C></xml>'
    for bad in (bomb, b"<xml><Content>", b"<html></html>", b"", b"\xff\xfe"):
        with pytest.raises(BadXml):
            parse_xml(bad)


def test_passive_reply_parses_in_wechatpy() -> None:
    from wechatpy import parse_message

    msg = parse_message(text_reply("openid-1", "gh_account", "答复]]>含特殊字符 & <b>"))
    assert (msg.type, msg.source, msg.target, msg.content) == ("text", "gh_account", "openid-1",
                                                               "答复]]>含特殊字符 & <b>")


# -- rendering and splitting ---------------------------------------------------------------------------------------------
class Out:
    def __init__(self, text: str | None, buttons: list[dict[str, str]] | None = None, custom: dict | None = None,
                 sender_kind: str = "bot") -> None:
        self.text, self.buttons, self.custom, self.sender_kind = text, buttons or [], custom, sender_kind


def test_render_numbers_the_last_buttons_and_picks_by_number() -> None:
    text, payloads = render.render([
        Out("您要办理哪一项？", [{"title": "身份证补领", "payload": '/inform{"service":"id-card-reissue"}'},
                               {"title": "身份证换领", "payload": '/inform{"service":"id-card-renew"}'}]),
        Out(None, custom={"status": {"state": "bot"}}),
        Out("工作人员稍后回复", sender_kind="clerk"),
    ])
    assert text == ("您要办理哪一项？\n回复数字选择：\n1. 身份证补领\n2. 身份证换领\n\n"
                    f"{render.CLERK_PREFIX}工作人员稍后回复")
    assert payloads == ['/inform{"service":"id-card-reissue"}', '/inform{"service":"id-card-renew"}']
    for reply, picked in (("1", 0), ("２", 1), (" 2。", 1), ("第1个", 0), ("二", 1)):
        assert render.choice(reply, payloads) == payloads[picked]
    for reply in ("3", "0", "12 个月", "1和2", "身份证"):
        assert render.choice(reply, payloads) is None
    assert render.choice("1", None) is None


def test_split_on_character_boundaries_within_2048_bytes() -> None:
    text = "".join(chr(0x4E00 + i % 500) for i in range(1500)) + "😀" * 300 + "abc" * 200  # 3-, 4- and 1-byte chars
    parts = render.split(text)
    assert len(parts) > 1
    assert all(len(p.encode("utf-8")) <= render.MAX_BYTES for p in parts)
    assert "".join(parts) == text  # nothing lost, no character cut in two
    assert len(parts[0].encode("utf-8")) >= 2046  # as full as the 3-byte characters allow
    lines = "\n".join(f"第{i}条：" + "材料" * 30 for i in range(60))
    parts = render.split(lines)
    assert all(len(p.encode("utf-8")) <= 2048 for p in parts)
    assert all(p.startswith("第") for p in parts)  # long texts break between lines
    assert "\n".join(parts) == lines
    assert render.split("  短  ") == ["短"] and render.split("") == []


# -- the API client: shared token, refresh, errcodes ------------------------------------------------------------------
@pytest.fixture
def fake() -> Iterator[FakeWeChat]:
    server = FakeWeChat(APPID, SECRET).start()
    yield server
    server.stop()


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'govbot.db'}"


def kv_of(url: str) -> KV:
    """A KV store as one gateway process opens it (own engine, own connections)."""
    return KV(open_database(url)[1])


def api_of(url: str, fake: FakeWeChat) -> WeChatAPI:
    return WeChatAPI(fake.base, APPID, SECRET, AsyncKV(kv_of(url), "wechat"))


def test_token_fetched_once_for_all_gateway_processes(fake: FakeWeChat, db_url: str) -> None:
    async def main() -> list[Sent]:
        one, two = api_of(db_url, fake), api_of(db_url, fake)  # two processes sharing the database
        results = await asyncio.gather(*(api.send_text(f"openid-{i}", f"消息{i}")
                                         for i, api in enumerate([one, two] * 4)))
        results.append(await two.send_text("openid-x", "再来一条"))
        await one.aclose()
        await two.aclose()
        return results

    assert asyncio.run(main()) == [Sent.OK] * 9
    assert len(fake.token_calls) == 1
    assert fake.token_calls[0] == {"grant_type": "client_credential", "appid": APPID, "secret": SECRET}
    assert sorted(fake.texts()) == sorted([f"消息{i}" for i in range(8)] + ["再来一条"])


def test_token_refreshed_and_retried_once_on_40001_and_42001(fake: FakeWeChat, db_url: str) -> None:
    async def main() -> list[Sent]:
        api = api_of(db_url, fake)
        out = [await api.send_text("openid-1", "第一条")]
        fake.invalidate_tokens()  # e.g. someone fetched a token with the same AppSecret elsewhere
        out.append(await api.send_text("openid-1", "第二条"))
        fake.expire_tokens()
        out.append(await api.send_text("openid-1", "第三条"))
        fake.fail_next(40001)  # refused again right after a refresh: retried once only, then given up
        fake.fail_next(40001)
        out.append(await api.send_text("openid-1", "第四条"))
        await api.aclose()
        return out

    assert asyncio.run(main()) == [Sent.OK, Sent.OK, Sent.OK, Sent.FAILED]
    assert fake.texts() == ["第一条", "第二条", "第三条"]
    assert [c["errcode"] for c in fake.send_calls] == [0, 40001, 0, 42001, 0, 40001, 40001]
    assert len(fake.token_calls) == 4  # first, after 40001, after 42001, after the injected 40001


def test_token_refreshed_before_it_expires(fake: FakeWeChat, db_url: str) -> None:
    kv = kv_of(db_url)

    async def main() -> None:
        api = WeChatAPI(fake.base, APPID, SECRET, AsyncKV(kv, "wechat"))
        first = await api.access_token()
        assert await api.access_token() == first and len(fake.token_calls) == 1
        cached = kv.get(f"wechat:token:{APPID}")
        assert cached["refresh_at"] < cached["expires_at"] <= time.time() + 7200
        kv.set(f"wechat:token:{APPID}", {**cached, "refresh_at": time.time() - 1}, 7200)  # due, still valid
        assert await api.access_token() != first and len(fake.token_calls) == 2
        await api.aclose()

    asyncio.run(main())


def test_send_errcodes(fake: FakeWeChat, db_url: str, tmp_path: Path) -> None:
    async def main() -> list[Sent]:
        api = api_of(db_url, fake)
        fake.close_window("openid-away")
        out = [await api.send_text("openid-away", "不在 48 小时内")]
        fake.fail_next(45047)
        out.append(await api.send_text("openid-1", "超出条数"))
        out.append(await WeChatAPI(fake.base, APPID, "", api.kv).send_text("openid-1", "未配置"))
        wrong = WeChatAPI(fake.base, APPID, "wrong-secret", AsyncKV(kv_of(f"sqlite:///{tmp_path / 'b.db'}"), "wechat"))
        out.append(await wrong.send_text("openid-2", "错误的密钥"))
        await api.aclose()
        await wrong.aclose()
        return out

    assert asyncio.run(main()) == [Sent.OUT_OF_WINDOW, Sent.QUOTA, Sent.NOT_CONFIGURED, Sent.FAILED]
    assert fake.texts() == [] and [c.get("secret") for c in fake.token_calls] == [SECRET, "wrong-secret"]
