"""The WeChat 公众号 connector against independent peers: wechatpy plays WeChat's server (signs and encrypts the
callbacks, verifies and decrypts our replies), `tests/wechat_fake.py` is WeChat's API server on loopback, the KV
store and the hub run on a real SQLite database."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import xmltodict
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from wechatpy import parse_message
from wechatpy.crypto import PrpCrypto, WeChatCrypto
from wechatpy.exceptions import InvalidAppIdException
from wechatpy.utils import WeChatSigner

from connectors.config import GatewaySettings
from connectors.kv import KV
from connectors.store import Conversation, Message, Ticket, open_database
from connectors.wechat import mount, render
from connectors.wechat.api import Sent, WeChatAPI
from connectors.wechat.channel import EMPTY, MENU_HINT, UNSUPPORTED, VOICE_UNRECOGNISED, WeChatChannel
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


# -- the callback, end to end: wechatpy as WeChat's server, the real gateway, hub, database and Rasa ------------------
class WeChatPeer:
    """WeChat's server pushing callbacks to `/wechat` in one of the three modes, and reading the replies."""

    def __init__(self, client: TestClient, mode: str = "plain", *, appid: str = APPID, token: str = TOKEN) -> None:
        assert mode in ("plain", "compatible", "safe")
        self.client, self.mode = client, mode
        self.crypto = WeChatCrypto(token, AES_KEY, appid)  # wechatpy's, bound to the sender's AppID
        self.token = token
        self.msgid = int(time.time() * 1000) * 1000 + secrets.randbelow(1000)

    # what WeChat sends (https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Receiving_standard_messages.html)
    def text(self, openid: str, content: str, msgid: int | None = None) -> str:
        return self._message(openid, "text", f"<Content><![CDATA[{content}]]></Content>", msgid)

    def voice(self, openid: str, recognition: str | None) -> str:
        extra = "<MediaId><![CDATA[media-1]]></MediaId><Format><![CDATA[amr]]></Format>"
        if recognition is not None:
            extra += f"<Recognition><![CDATA[{recognition}]]></Recognition>"
        return self._message(openid, "voice", extra)

    def image(self, openid: str) -> str:
        return self._message(openid, "image", "<PicUrl><![CDATA[http://example.invalid/p.jpg]]></PicUrl>"
                                              "<MediaId><![CDATA[media-2]]></MediaId>")

    def event(self, openid: str, event: str, created: int | None = None) -> str:
        return (f"<xml><ToUserName><![CDATA[gh_govbot]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
                f"<CreateTime>{created or int(time.time())}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
                f"<Event><![CDATA[{event}]]></Event></xml>")

    def _message(self, openid: str, kind: str, extra: str, msgid: int | None = None) -> str:
        if msgid is None:
            self.msgid += 1
            msgid = self.msgid
        return (f"<xml><ToUserName><![CDATA[gh_govbot]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
                f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[{kind}]]></MsgType>{extra}"
                f"<MsgId>{msgid}</MsgId></xml>")

    def post(self, xml: str | bytes, *, forge: str = "") -> httpx.Response:
        params, body = self.signed(xml, forge=forge)
        return self.client.post("/wechat", params=params, content=body)

    def signed(self, xml: str | bytes, *, forge: str = "", openid: str = "") -> tuple[dict[str, str], bytes]:
        """The query and body of a callback as WeChat sends it; `forge` spoils "signature" or "msg_signature"."""
        timestamp, nonce = str(int(time.time())), secrets.token_hex(5)
        params = {"signature": wechatpy_sign(self.token, timestamp, nonce), "timestamp": timestamp, "nonce": nonce,
                  "openid": openid}
        body = xml.encode("utf-8") if isinstance(xml, str) else xml
        if self.mode != "plain":
            envelope = xmltodict.parse(self.crypto.encrypt_message(xml, nonce, timestamp))["xml"]
            params.update(encrypt_type="aes", msg_signature=envelope["MsgSignature"])
            encrypt = f"<Encrypt><![CDATA[{envelope['Encrypt']}]]></Encrypt>"
            if self.mode == "safe":  # only the account and the ciphertext travel in the clear
                body = f"<xml><ToUserName><![CDATA[gh_govbot]]></ToUserName>{encrypt}</xml>".encode()
            else:  # compatible: the plaintext fields and the ciphertext side by side
                body = body.replace(b"</xml>", encrypt.encode() + b"</xml>")
        if forge:
            params[forge] = "0" * 40
        return params, body

    def reply(self, resp: httpx.Response) -> str | None:
        """The passive reply's text (None: `success`, i.e. nothing passive), checked and decrypted by wechatpy."""
        assert resp.status_code == 200, resp.text
        if resp.text == "success":
            return None
        xml = resp.text
        if self.mode != "plain":
            envelope = xmltodict.parse(xml)["xml"]
            assert set(envelope) == {"Encrypt", "MsgSignature", "TimeStamp", "Nonce"}
            xml = self.crypto.decrypt_message(xml, envelope["MsgSignature"], envelope["TimeStamp"], envelope["Nonce"])
        msg = parse_message(xml)
        assert msg.type == "text" and msg.target.startswith("o") and msg.source == "gh_govbot"
        assert len(msg.content.encode("utf-8")) <= 2048
        return str(msg.content)

    def say(self, openid: str, content: str) -> str | None:
        return self.reply(self.post(self.text(openid, content)))


def new_openid() -> str:
    return "o" + secrets.token_urlsafe(20)[:27]


@pytest.fixture(scope="module")
def wechat_api() -> Iterator[FakeWeChat]:
    server = FakeWeChat(APPID, SECRET).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, wechat_api: FakeWeChat, bot_stack: Any,
            kb_copy: Any) -> Iterator[Any]:
    """The real gateway (`build_gateway`, in this process) on a fresh SQLite file, with the real Rasa and action
    servers (tests/gateway_fixtures.py) and the fake WeChat API server."""
    from connectors.gateway import build_gateway
    from retrieval import KnowledgeService, Settings

    tmp = tmp_path_factory.mktemp("wechat")
    gw_settings = GatewaySettings(
        database_url=f"sqlite:///{tmp / 'govbot.db'}", rasa_url=bot_stack.rasa_url, rasa_token=bot_stack.token,
        secret_key="test", office_hours="mon-sun 00:00-24:00", wechat_token=TOKEN, wechat_appid=APPID,
        wechat_secret=SECRET, wechat_aes_key=AES_KEY, wechat_api_base=wechat_api.base, _env_file=None)
    gw = build_gateway(gw_settings, KnowledgeService(Settings(corpus_dir=kb_copy.corpus_dir,
                                                              index_dir=kb_copy.index_dir)))
    yield gw
    gw.engine.dispose()


@pytest.fixture(scope="module")
def client(gateway: Any) -> Iterator[TestClient]:
    with TestClient(gateway.asgi) as c:
        yield c


def stored(gateway: Any, openid: str) -> list[Message]:
    """What the hub stored for this citizen (inbound and outbound)."""
    with gateway.factory() as s:
        return list(s.scalars(select(Message).join(Conversation).where(
            Conversation.channel == "wechat", Conversation.user_id == openid).order_by(Message.id)))


def test_not_configured_answers_404_in_chinese() -> None:
    app = FastAPI()
    mount(app, None, GatewaySettings(wechat_token="", _env_file=None), None)  # type: ignore[arg-type]
    with TestClient(app) as c:
        for resp in (c.get("/wechat"), c.post("/wechat", content=b"<xml/>")):
            assert resp.status_code == 404 and "未配置微信公众号" in resp.json()["detail"]


def test_server_verification(client: TestClient) -> None:
    timestamp, nonce = str(int(time.time())), "8721"
    signature = wechatpy_sign(TOKEN, timestamp, nonce)
    resp = client.get("/wechat", params={"signature": signature, "timestamp": timestamp, "nonce": nonce,
                                         "echostr": "5837182736451"})
    assert resp.status_code == 200 and resp.text == "5837182736451"
    resp = client.get("/wechat", params={"signature": "f" * 40, "timestamp": timestamp, "nonce": nonce,
                                         "echostr": "5837182736451"})
    assert resp.status_code == 403 and "签名" in resp.json()["detail"]
    assert client.get("/wechat", params={"echostr": "1"}).status_code == 403


@pytest.mark.parametrize("mode", ["plain", "compatible", "safe"])
def test_text_answered_passively_in_every_mode(client: TestClient, gateway: Any, wechat_api: FakeWeChat,
                                               mode: str) -> None:
    peer, openid = WeChatPeer(client, mode), new_openid()
    answer = peer.say(openid, "身份证丢了怎么补办")
    assert answer and "身份证" in answer
    messages = stored(gateway, openid)
    assert messages[0].direction == "inbound" and messages[0].text == "身份证丢了怎么补办"
    assert messages[0].external_id == str(peer.msgid)
    assert any(m.direction == "outbound" and m.text and m.text.strip() in answer for m in messages[1:])
    assert wechat_api.texts(openid) == []  # all of it passive


def test_voice_with_and_without_recognition(client: TestClient, gateway: Any) -> None:
    peer, openid = WeChatPeer(client, "safe"), new_openid()
    assert peer.reply(peer.post(peer.voice(openid, None))) == VOICE_UNRECOGNISED
    assert peer.reply(peer.post(peer.voice(openid, ""))) == VOICE_UNRECOGNISED
    assert stored(gateway, openid) == []
    answer = peer.reply(peer.post(peer.voice(openid, "护照怎么办理？")))
    assert answer and "护照" in answer
    inbound = stored(gateway, openid)[0]
    assert inbound.text == "护照怎么办理？" and inbound.payload["metadata"] == {"input": "voice"}


def test_subscribe_welcome_then_a_number_asks_the_hot_question(client: TestClient, gateway: Any) -> None:
    peer, openid = WeChatPeer(client), new_openid()
    welcome = peer.reply(peer.post(peer.event(openid, "subscribe")))
    assert welcome is not None and welcome.startswith("您好，欢迎关注")
    assert "回复数字选择：\n1. 身份证丢了怎么补办\n2. 办护照需要什么材料" in welcome
    assert stored(gateway, openid) == []
    answer = peer.say(openid, "1")
    assert answer and "身份证" in answer
    assert stored(gateway, openid)[0].text == "身份证丢了怎么补办"
    assert peer.reply(peer.post(peer.event(openid, "unsubscribe"))) is None


def test_other_message_types_get_a_polite_chinese_reply(client: TestClient, gateway: Any) -> None:
    peer, openid = WeChatPeer(client, "compatible"), new_openid()
    assert peer.reply(peer.post(peer.image(openid))) == UNSUPPORTED
    assert peer.reply(peer.post(peer._message(openid, "location", "<Location_X>23.1</Location_X>"))) == UNSUPPORTED
    assert peer.reply(peer.post(peer.event(openid, "CLICK"))) == MENU_HINT
    assert peer.reply(peer.post(peer.event(openid, "VIEW"))) is None
    assert peer.say(openid, "   ") == EMPTY
    assert "请精简到 1000 字以内" in (peer.say(openid, "长" * 1001) or "")
    assert stored(gateway, openid) == []


def test_bad_callbacks_are_refused_and_reach_nothing(client: TestClient, gateway: Any) -> None:
    openid = new_openid()
    plain, safe = WeChatPeer(client), WeChatPeer(client, "safe")
    other_app = WeChatPeer(client, "safe", appid="wxSOMEONEELSE000")
    cases = [
        (plain.post(plain.text(openid, "你好"), forge="signature"), 403, "签名"),
        (safe.post(safe.text(openid, "你好"), forge="signature"), 403, "签名"),
        (safe.post(safe.text(openid, "你好"), forge="msg_signature"), 403, "消息签名"),
        (other_app.post(other_app.text(openid, "你好")), 403, "AppID"),
        (plain.post(b"<xml><FromUserName>" + openid.encode() + b"</FromUserName><MsgType>text"), 400, "XML"),
        (plain.post(b"not xml at all"), 400, "XML"),
        (plain.post(b"<xml><Content>hi</Content></xml>"), 400, "FromUserName"),
        (plain.post(plain.text(openid, "你" * 30000)), 413, "过大"),
    ]
    for resp, status, words in cases:
        assert resp.status_code == status, (status, resp.text)
        assert words in resp.json()["detail"]
    assert stored(gateway, openid) == []


def test_a_replayed_message_is_answered_once(client: TestClient, gateway: Any, wechat_api: FakeWeChat) -> None:
    peer, openid = WeChatPeer(client, "safe"), new_openid()
    xml = peer.text(openid, "办护照需要什么材料")
    first = peer.reply(peer.post(xml))
    assert first
    for _retry in range(3):  # WeChat's retries: same MsgId, fresh signature and nonce
        assert peer.reply(peer.post(xml)) == first
    assert [m.text for m in stored(gateway, openid) if m.direction == "inbound"] == ["办护照需要什么材料"]
    assert wechat_api.texts(openid) == []


def wechat_channel(gateway: Any) -> WeChatChannel:
    """The channel `build_gateway` mounted (its bound endpoint's object)."""
    return next(r.endpoint.__self__ for r in gateway.app.routes if getattr(r, "path", "") == "/wechat"
                and isinstance(getattr(r.endpoint, "__self__", None), WeChatChannel))


@contextlib.contextmanager
def answer_budget(gateway: Any, seconds: float) -> Iterator[None]:
    channel = wechat_channel(gateway)
    saved, channel.budget = channel.budget, seconds
    try:
        yield
    finally:
        channel.budget = saved


def test_a_retry_during_processing_waits_for_the_first(client: TestClient, gateway: Any,
                                                       wechat_api: FakeWeChat) -> None:
    """WeChat's retry arrives while the first callback is still with the hub: one hub turn, one answer."""
    peer, openid = WeChatPeer(client, "safe"), new_openid()
    xml = peer.text(openid, "身份证丢了怎么补办")
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(peer.post, xml)
        time.sleep(0.05)
        retry = pool.submit(peer.post, xml)
        answer = peer.reply(first.result())
        assert answer and "身份证" in answer and peer.reply(retry.result()) == answer
    assert len([m for m in stored(gateway, openid) if m.direction == "inbound"]) == 1
    assert wechat_api.texts(openid) == []


def test_slow_answer_goes_by_one_customer_service_message(client: TestClient, gateway: Any,
                                                          wechat_api: FakeWeChat) -> None:
    peer, openid = WeChatPeer(client, "safe"), new_openid()
    xml = peer.text(openid, "身份证丢了怎么补办")
    with answer_budget(gateway, 0.0):
        assert peer.reply(peer.post(xml)) is None  # `success` at once; the answer follows by the API
        assert peer.reply(peer.post(xml)) is None  # WeChat's retry: nothing more
    sent = wechat_api.texts(openid)
    assert len(sent) == 1 and "身份证" in sent[0]
    outbound = [m.text for m in stored(gateway, openid) if m.direction == "outbound" and m.text]
    assert outbound and all(t.strip() in sent[0] for t in outbound)


# -- pushes: clerk replies through the desk API reach the citizen by customer-service messages ------------------------
@pytest.fixture(scope="module")
def clerk(client: TestClient, gateway: Any) -> dict[str, str]:
    """A clerk logged in on the module's client (cookie) — the headers to send with desk requests."""
    from connectors.auth import create_clerk

    create_clerk(gateway.factory, "wang", "desk-pass-2026", display_name="王老师")
    r = client.post("/api/auth/login", json={"username": "wang", "password": "desk-pass-2026"})
    assert r.status_code == 200, r.text
    return {"X-CSRF-Token": r.json()["csrf"]}


def handed_off(peer: WeChatPeer, gateway: Any, openid: str) -> int:
    """The citizen asks for a person: the ticket's id."""
    assert "人工" in (peer.say(openid, "我要人工") or "")
    with gateway.factory() as s:
        ticket_id = s.scalar(select(Ticket.id).join(Conversation).where(Conversation.user_id == openid))
    assert ticket_id is not None
    return int(ticket_id)


def desk_reply(client: TestClient, clerk: dict[str, str], ticket_id: int, text: str) -> bool:
    r = client.post(f"/api/desk/tickets/{ticket_id}/reply", json={"text": text}, headers=clerk)
    assert r.status_code == 200, r.text
    return bool(r.json()["message"]["delivered"])


def test_clerk_replies_by_customer_service_messages_45015_and_45047_wait(
        client: TestClient, gateway: Any, wechat_api: FakeWeChat, clerk: dict[str, str]) -> None:
    peer, openid = WeChatPeer(client, "safe"), new_openid()
    ticket_id = handed_off(peer, gateway, openid)

    wechat_api.invalidate_tokens()  # the token was replaced elsewhere: refreshed, the reply still goes out once
    assert desk_reply(client, clerk, ticket_id, "您好，我是王老师。请问身份证是在本市丢失的吗？")
    assert wechat_api.texts(openid) == [f"{render.CLERK_PREFIX}您好，我是王老师。请问身份证是在本市丢失的吗？"]
    assert [c["errcode"] for c in wechat_api.send_calls if openid in c["body"]] == [40001, 0]

    wechat_api.close_window(openid)  # the citizen has not written for 48 hours
    assert not desk_reply(client, clerk, ticket_id, "请带上户口簿到派出所办理。")
    wechat_api.open_window(openid)
    assert wechat_api.texts(openid)[1:] == []
    answer = peer.say(openid, "好的，谢谢")  # the pending reply comes with the passive reply to the next message
    assert answer is not None and answer.startswith(f"{render.CLERK_PREFIX}请带上户口簿到派出所办理。")

    wechat_api.fail_next(45047)  # over the customer-service quota
    assert not desk_reply(client, clerk, ticket_id, "办好后可以在这里评价我们的服务。")
    assert "办好后可以在这里评价我们的服务。" in (peer.say(openid, "明白") or "")
    assert len(wechat_api.texts(openid)) == 1  # each reply reached the citizen exactly once
    with gateway.factory() as s:
        undelivered = s.scalars(select(Message.id).join(Conversation).where(
            Conversation.user_id == openid, Message.delivered.is_(False))).all()
    assert undelivered == []


def test_long_replies_are_split_within_2048_bytes(client: TestClient, gateway: Any, wechat_api: FakeWeChat,
                                                  clerk: dict[str, str]) -> None:
    peer, openid = WeChatPeer(client), new_openid()
    ticket_id = handed_off(peer, gateway, openid)
    long_text = "".join(f"第{i}项：请携带本人居民身份证原件及复印件一份，" for i in range(1, 121))  # > 6000 bytes

    assert desk_reply(client, clerk, ticket_id, long_text)  # by the API: several messages, in order
    parts = wechat_api.texts(openid)
    assert len(parts) >= 3 and all(len(p.encode("utf-8")) <= 2048 for p in parts)
    assert "".join(parts) == render.CLERK_PREFIX + long_text

    wechat_api.close_window(openid)
    assert not desk_reply(client, clerk, ticket_id, long_text)
    wechat_api.open_window(openid)
    first = peer.say(openid, "收到")  # the first part passively, the rest by the API after the response
    rest = wechat_api.texts(openid)[len(parts):]
    assert first is not None and len(rest) == len(parts) - 1
    assert first + "".join(rest) == render.CLERK_PREFIX + long_text


def test_slow_answer_outside_the_window_comes_with_the_next_message(client: TestClient, gateway: Any,
                                                                    wechat_api: FakeWeChat) -> None:
    peer, openid = WeChatPeer(client, "compatible"), new_openid()
    wechat_api.close_window(openid)
    with answer_budget(gateway, 0.0):
        assert peer.say(openid, "办护照需要什么材料") is None
    assert wechat_api.texts(openid) == [] and any(openid in c["body"] for c in wechat_api.send_calls)
    late = [m.text.strip() for m in stored(gateway, openid) if m.direction == "outbound" and m.text]
    wechat_api.open_window(openid)
    later = peer.say(openid, "身份证丢了怎么补办")
    assert late and later is not None and later.startswith(late[0])
    assert len(later) > len("\n\n".join(late)) and wechat_api.texts(openid) == []


# -- the real gateway process (uvicorn, `python -m connectors.serve`) configured by GOVBOT_WECHAT_* -------------------
def test_served_gateway_over_http(tmp_path: Path, bot_stack: Any, kb_copy: Any, wechat_api: FakeWeChat) -> None:
    from tests.gateway_fixtures import run_gateway, sqlite_url

    env = {"GOVBOT_WECHAT_TOKEN": TOKEN, "GOVBOT_WECHAT_APPID": APPID, "GOVBOT_WECHAT_SECRET": SECRET,
           "GOVBOT_WECHAT_AES_KEY": AES_KEY, "GOVBOT_WECHAT_API_BASE": wechat_api.base}
    with run_gateway(tmp_path, sqlite_url(tmp_path), bot_stack, kb_copy, **env) as gw:
        http, openid = gw.client(), new_openid()
        timestamp, nonce = str(int(time.time())), "42"
        verify = http.get("/wechat", params={"signature": wechatpy_sign(TOKEN, timestamp, nonce),
                                             "timestamp": timestamp, "nonce": nonce, "echostr": "echo-1"})
        assert verify.status_code == 200 and verify.text == "echo-1"
        peer = WeChatPeer(http, "safe")  # type: ignore[arg-type]
        answer = peer.say(openid, "社保卡怎么办理")
        assert answer and "社保卡" in answer
        assert peer.post(peer.text(openid, "你好"), forge="msg_signature").status_code == 403
        assert peer.post(peer.text(openid, "你" * 30000)).status_code == 413
        engine, factory = open_database(gw.database_url)
        try:
            with factory() as s:
                inbound = s.scalars(select(Message.text).where(Message.direction == "inbound")).all()
        finally:
            engine.dispose()
        assert inbound == ["社保卡怎么办理"]
