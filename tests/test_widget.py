"""The portal widget (connectors/web): Rasa's socket.io protocol on the gateway, the widget script, the demo page,
suggestions — against a real gateway process with the real Rasa and action servers (tests/gateway_fixtures.py).

- the wire protocol, spoken by a minimal socket.io client written here (so the test does not trust the JS client):
  session_request/session_confirm, user_uttered → bot_uttered in Rasa 3.6 SocketIOOutput's shapes, refused input
  as `govbot_error`, rooms per session (pushes reach every tab; without a socket they wait and come with the next
  message), history, 好差评;
- tests/browser/widget.mjs: the widget on the demo page in Chromium (keyboard, card, follow-up, rating, 长辈版,
  bad input, handoff with a clerk reply sent here through the desk API while the browser waits, history after reload,
  phone layout, typing indicator); screenshots in var/browser/widget/;
- tests/browser/webchat.mjs: the unmodified rasa-webchat 1.0.1 bundle (`npm pack`, cached) against the same gateway.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import pytest

from bot.runner import free_port
from connectors.web import rasa_messages, widget_script
from tests.browser_scenario import Scenario, require_browser
from tests.gateway_fixtures import GatewayProcess, gateway_env, sqlite_url

REPO = Path(__file__).resolve().parent.parent
SCREENS = REPO / "var" / "browser" / "widget"
WEBCHAT = "rasa-webchat@1.0.1"
CLERK_REPLY = "您好，<b>请带户口簿</b><img src=x onerror=alert(1)>到户籍所在地派出所申请补领。"
REDIS_URL = "redis://127.0.0.1:6379/0"
MAX_CHARS = 1000  # GatewaySettings.max_text_chars (the fixture's gateway keeps the default)


# -- a minimal socket.io (v5 protocol, Engine.IO 4) client over one websocket -------------------------------------------
class SocketIO:
    def __init__(self, base_url: str) -> None:
        from websockets.sync.client import connect

        self.ws = connect(base_url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket",
                          open_timeout=10, max_size=2**22)
        assert self.ws.recv(10).startswith("0"), "Engine.IO open packet"
        self.ws.send("40")
        assert self.ws.recv(10).startswith("40"), "socket.io connect"
        self.events: list[tuple[str, Any]] = []
        self.acks: dict[int, Any] = {}
        self._next_ack = 0

    def emit(self, event: str, data: Any = None, ack: bool = False) -> Optional[int]:
        if not ack:
            self.ws.send("42" + json.dumps([event, data], ensure_ascii=False))
            return None
        self._next_ack += 1
        self.ws.send(f"42{self._next_ack}" + json.dumps([event, data], ensure_ascii=False))
        return self._next_ack

    def _pump(self, timeout: float) -> None:
        msg = self.ws.recv(timeout)
        assert isinstance(msg, str)
        if msg == "2":  # Engine.IO ping
            self.ws.send("3")
        elif msg.startswith("42"):
            packet = json.loads(msg[2:])
            self.events.append((packet[0], packet[1] if len(packet) > 1 else None))
        elif msg.startswith("43"):
            m = re.match(r"43(\d+)(.*)", msg, re.S)
            assert m, msg
            self.acks[int(m.group(1))] = json.loads(m.group(2))[0]

    def wait_ack(self, n: Optional[int], timeout: float = 60) -> Any:
        assert n is not None
        deadline = time.monotonic() + timeout
        while n not in self.acks:
            left = deadline - time.monotonic()
            assert left > 0, f"no ack {n} within {timeout} s; events: {self.events}"
            self._pump(left)
        return self.acks[n]

    def wait_event(self, name: str, where: Callable[[Any], bool] = lambda d: True, timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for i in range(seen, len(self.events)):
                event, data = self.events[i]
                if event == name and where(data):
                    del self.events[i]
                    return data
            seen = len(self.events)
            left = deadline - time.monotonic()
            assert left > 0, f"no {name} within {timeout} s; events: {self.events}"
            self._pump(left)

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                self._pump(left)
            except TimeoutError:
                return

    def take(self, name: str) -> list[Any]:
        out = [d for e, d in self.events if e == name]
        self.events = [(e, d) for e, d in self.events if e != name]
        return out

    def session(self, session_id: Optional[str] = None) -> str:
        self.emit("session_request", {"session_id": session_id})
        confirmed = self.wait_event("session_confirm")
        assert isinstance(confirmed, str)
        return confirmed

    def say(self, session_id: str, text: str, **extra: Any) -> Any:
        return self.wait_ack(self.emit("user_uttered", {"message": text, "session_id": session_id, **extra},
                                       ack=True), timeout=90)

    def close(self) -> None:
        self.ws.close()


# -- unit: the wire shapes, the script, the suggestions -----------------------------------------------------------------
def test_outbound_messages_take_rasa_socketio_shapes() -> None:
    from connectors.hub import Outbound

    now = datetime(2026, 1, 2, 3, 4, 5)
    card = {"card": {"service": "x"}}
    text_card = rasa_messages(Outbound(7, 1, "bot", "第一段\n\n第二段", [], card, now))
    assert [sorted(m) for m in text_card] == [["metadata", "text"], ["metadata", "text"], ["custom", "metadata"]]
    assert [m.get("text") for m in text_card[:2]] == ["第一段", "第二段"]  # SocketIOOutput splits on blank lines
    assert text_card[2]["custom"] == card
    assert text_card[0]["metadata"] == {"message_id": 7, "sender": "bot", "part": 0, "parts": 3,
                                        "created_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc).isoformat()}
    buttons = rasa_messages(Outbound(8, 1, "bot", "请选择：", [{"title": "护照", "payload": "/inform"}], None, now))
    assert [{k: v for k, v in m.items() if k != "metadata"} for m in buttons] == [
        {"text": "请选择：", "quick_replies": [{"content_type": "text", "title": "护照", "payload": "/inform"}]}]
    two = rasa_messages(Outbound(9, 1, "bot", "甲\n\n乙", [{"title": "t", "payload": "p"}], None, now))
    assert two[0]["quick_replies"] == [] and two[1]["quick_replies"][0]["title"] == "t"  # buttons on the last part


def test_widget_script_is_one_self_contained_file(tmp_path: Path) -> None:
    body = widget_script(MAX_CHARS).decode("utf-8")
    assert body.count("Socket.IO v4") == 1 and "var io = module.exports;" in body
    assert '"maxChars": 1000' in body and "GOVBOT_CSS" in body
    path = tmp_path / "widget.js"
    path.write_text(body, encoding="utf-8")
    if shutil.which("node"):
        check = subprocess.run(["node", "--check", str(path)], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
    # Citizen, clerk and knowledge-base text is only ever put into the page as text.
    source = (REPO / "connectors" / "web" / "static" / "widget.js").read_text(encoding="utf-8")
    assert not re.search(r"\.(innerHTML|outerHTML|insertAdjacentHTML)\b|document\.write|\beval\(", source)


def test_suggestions_and_hot_questions_come_from_the_knowledge_base() -> None:
    from connectors.web.suggest import Suggester
    from knowledge import load_corpus
    from retrieval import get_settings

    corpus, _ = load_corpus(get_settings().corpus_dir)
    s = Suggester(lambda: corpus)
    top = s.suggest("护照")
    assert top[0] == {"text": "普通护照申请", "kind": "service", "service": "passport", "label": "办事指南"}, top
    assert any(x["kind"] == "faq" and "护照" in x["text"] for x in top)
    assert s.suggest("護照")[0]["service"] == "passport"  # traditional characters, as the NLU normalises them
    assert s.suggest("身份证丢了")[0]["text"] == "居民身份证补领"  # an alias leads to the service name
    assert s.suggest("") == [] and s.suggest("   ") == []
    hot = s.hot(6)
    assert len(hot) == 6 and hot[0] == {"text": "身份证丢了怎么补办", "service": "id-card-reissue"}


# -- the HTTP side on the real gateway ----------------------------------------------------------------------------------
@pytest.mark.rasa
@pytest.mark.model
@pytest.mark.parametrize("gateway", ["sqlite"], indirect=True)
def test_portal_page_script_and_widget_api(gateway: GatewayProcess) -> None:
    c = gateway.client()
    page = c.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "政务服务网" in page.text and '<script src="/widget.js"' in page.text
    js = c.get("/widget.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("application/javascript")
    assert js.headers["access-control-allow-origin"] == "*" and "Socket.IO" in js.text
    assert c.get("/widget.js", headers={"If-None-Match": js.headers["etag"]}).status_code == 304
    assert c.get("/widget/socket.io-client.LICENSE").text.startswith("The MIT License")
    assert c.get("/widget/portal.html").status_code == 404 and c.get("/widget/..%2F__init__.py").status_code == 404

    sug = c.get("/api/widget/suggest", params={"q": "公积金"}, headers={"Origin": "https://portal.example.org"})
    assert sug.status_code == 200 and sug.headers["access-control-allow-origin"] == "*"
    texts = [x["text"] for x in sug.json()["suggestions"]]
    assert texts and all("公积金" in t for t in texts), texts
    assert c.get("/api/widget/suggest", params={"q": ""}).json()["suggestions"] == []
    assert c.get("/api/widget/suggest", params={"q": "长" * 300}).status_code == 422
    hot = c.get("/api/widget/hot").json()["questions"]
    assert [q["text"] for q in hot][:2] == ["身份证丢了怎么补办", "新生儿怎么上户口"]

    # socket.io answers cross-origin requests (the widget is embedded on other sites)
    poll = c.get("/socket.io/", params={"EIO": "4", "transport": "polling"}, headers={"Origin": "https://portal.example.org"})
    assert poll.status_code == 200 and poll.headers.get("access-control-allow-origin") == "https://portal.example.org"


# -- the protocol on the real gateway ----------------------------------------------------------------------------------
def _bot_messages(sio: SocketIO) -> list[dict[str, Any]]:
    return [m for m in sio.take("bot_uttered") if isinstance(m, dict)]


@pytest.mark.rasa
@pytest.mark.model
@pytest.mark.parametrize("gateway", ["sqlite"], indirect=True)
def test_rasa_socketio_protocol_on_the_hub(gateway: GatewayProcess) -> None:
    from retrieval import render_card_text

    sio = SocketIO(gateway.url)
    try:
        session = sio.session(None)
        assert re.fullmatch(r"[0-9a-f]{32}", session), session  # Rasa: uuid4().hex when none is sent
        assert sio.session(session) == session
        other = sio.session("no good!")
        assert other != session and re.fullmatch(r"[0-9a-f]{32}", other)
        assert sio.session(session) == session

        # refused input: a Chinese error event, an ack that says so, nothing stored
        ack = sio.say(session, "   ")
        err = sio.wait_event("govbot_error")
        assert ack["ok"] is False and err["code"] == "empty" and "不能为空" in err["message"]
        ack = sio.say(session, "长" * (MAX_CHARS + 1))
        err = sio.wait_event("govbot_error")
        assert ack["error"] == "too_long" and f"最多 {MAX_CHARS} 个字" in err["message"]
        bad = sio.wait_ack(sio.emit("user_uttered", "不是对象", ack=True))
        assert bad["error"] == "bad_request" and sio.wait_event("govbot_error")["code"] == "bad_request"

        # a question: Rasa's shapes — the card's text, then the card as `custom`
        ack = sio.say(session, "身份证丢了怎么补办", customData={"region": "北京", "language": "zh"})
        assert ack["ok"] is True, ack
        messages = _bot_messages(sio)
        assert messages and all(set(m) <= {"text", "quick_replies", "attachment", "custom", "metadata"}
                                for m in messages), messages
        assert len({m["metadata"]["message_id"] for m in messages}) == ack["messages"]
        cards = [(i, m["custom"]["card"]) for i, m in enumerate(messages) if "card" in (m.get("custom") or {})]
        assert cards, messages
        for i, card in cards:
            assert card["service"] == "id-card-reissue"
            assert messages[i - 1]["text"] == render_card_text(card)  # clients without cards read the text
        card_id = messages[cards[0][0]]["metadata"]["message_id"]

        # buttons: {text, quick_replies: [{content_type, title, payload}]}
        sio.say(session, "身份证")
        asked = [m for m in _bot_messages(sio) if m.get("quick_replies")]
        assert asked and asked[0]["text"], asked
        assert all(set(q) == {"content_type", "title", "payload"} and q["content_type"] == "text"
                   for q in asked[0]["quick_replies"])
        choice = next(q for q in asked[0]["quick_replies"] if "补领" in q["title"])
        sio.say(session, choice["payload"])
        assert any("card" in (m.get("custom") or {}) for m in _bot_messages(sio))

        # history (oldest first), with button payloads shown as what the button said
        hist = sio.wait_ack(sio.emit("govbot_history", {"session_id": session}, ack=True))
        assert hist["ok"] and hist["status"]["state"] == "bot"
        inbound = [m for m in hist["messages"] if m["direction"] == "inbound"]
        assert [m["text"] for m in inbound][:2] == ["身份证丢了怎么补办", "身份证"]
        assert inbound[2]["display"] == choice["title"], inbound[2]
        assert any(m["id"] == card_id and m["custom"]["card"] for m in hist["messages"])

        # 好差评: five levels, bound to a message of this conversation
        ok = sio.wait_ack(sio.emit("govbot_rate", {"session_id": session, "score": 5, "message_id": card_id}, ack=True))
        assert ok == {"ok": True, "score": 5, "label": "非常满意", "message": "感谢您的评价！"}
        wrong = sio.wait_ack(sio.emit("govbot_rate", {"session_id": session, "score": 6}, ack=True))
        assert wrong["error"] == "bad_score"
        alien = sio.wait_ack(sio.emit("govbot_rate", {"session_id": session, "score": 1, "message_id": 10**9}, ack=True))
        assert alien["error"] == "rate_failed" and "不在此会话" in alien["message"]
    finally:
        sio.close()

    from sqlalchemy import select

    from connectors.store import Conversation, Rating, open_database

    engine, factory = open_database(gateway.database_url)
    try:
        with factory() as s:
            conv = s.scalar(select(Conversation).where(Conversation.channel == "web", Conversation.user_id == session))
            assert conv is not None and conv.region == "北京"
            scores = [(r.score, r.message_id) for r in s.scalars(select(Rating).where(Rating.conversation_id == conv.id))]
            assert (5, card_id) in scores and len(scores) == 1, scores
    finally:
        engine.dispose()


@pytest.mark.rasa
@pytest.mark.model
@pytest.mark.parametrize("gateway", ["sqlite"], indirect=True)
def test_pushes_reach_every_tab_and_wait_while_none_is_connected(gateway: GatewayProcess) -> None:
    tab1, tab2 = SocketIO(gateway.url), SocketIO(gateway.url)
    lead = gateway.login("lead")
    try:
        session = tab1.session(None)
        assert tab2.session(session) == session
        tab1.say(session, "我要人工")
        status = [m["custom"]["status"] for m in _bot_messages(tab1) if "status" in (m.get("custom") or {})]
        assert status and status[-1]["state"] == "pending" and status[-1]["ticket_id"], status
        ticket = status[-1]["ticket_id"]
        echo = tab2.wait_event("govbot_echo")
        assert echo["text"] == "我要人工"  # the other tab shows what the citizen typed …
        tab2.wait_event("bot_uttered", lambda m: "status" in (m.get("custom") or {}))  # … and the answer
        assert tab1.take("govbot_echo") == []

        assert lead.post(f"/api/desk/tickets/{ticket}/claim").status_code == 200
        for tab in (tab1, tab2):
            pushed = tab.wait_event("bot_uttered", lambda m: (m.get("custom") or {}).get("status", {}).get("state") == "open")
            assert pushed["custom"]["status"]["clerk"] == "组长"
        reply = lead.post(f"/api/desk/tickets/{ticket}/reply", json={"text": "请问您在哪个城市办理？"}).json()
        assert reply["message"]["delivered"] is True
        for tab in (tab1, tab2):
            got = tab.wait_event("bot_uttered", lambda m: m.get("metadata", {}).get("sender") == "clerk")
            assert got["text"] == "请问您在哪个城市办理？"
    finally:
        tab1.close()
        tab2.close()

    # nobody connected: the reply waits (delivered false) and comes first with the citizen's next message
    time.sleep(0.5)
    later = lead.post(f"/api/desk/tickets/{ticket}/reply", json={"text": "在北京的话可以跨省通办。"}).json()
    assert later["message"]["delivered"] is False
    back = SocketIO(gateway.url)
    try:
        assert back.session(session) == session
        hist = back.wait_ack(back.emit("govbot_history", {"session_id": session}, ack=True))
        assert hist["status"]["state"] == "open" and hist["messages"][-1]["text"] == "在北京的话可以跨省通办。"
        back.say(session, "北京")
        texts = [m.get("text") for m in _bot_messages(back)]
        assert texts[:1] == ["在北京的话可以跨省通办。"], texts
    finally:
        back.close()
    assert lead.post(f"/api/desk/tickets/{ticket}/resolve").status_code == 200


@pytest.mark.rasa
@pytest.mark.model
def test_two_gateway_replicas_reach_the_widget_through_redis(tmp_path_factory: pytest.TempPathFactory,
                                                               bot_stack: Any, kb_copy: Any) -> None:
    """DESIGN §5: behind a load balancer the citizen's socket is on one replica, the clerk's request on another."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis at {REDIS_URL} is needed for the scale-out test: {exc}")
    folder = tmp_path_factory.mktemp("gw-redis")
    database = sqlite_url(folder)
    replicas = []
    try:
        for name in ("a", "b"):  # one after the other: the first creates the database
            (folder / name).mkdir()
            gw = GatewayProcess(free_port(), gateway_env(database, bot_stack, kb_copy, GOVBOT_REDIS_URL=REDIS_URL),
                                folder / name / "gateway.log")
            replicas.append(gw.start())
        a, b = replicas
        b.create_clerk("scale", role="admin", display_name="值班员")
        clerk = b.login("scale")
        sio = SocketIO(a.url)
        try:
            session = sio.session(None)
            sio.say(session, "我要人工")
            ticket = next(m["custom"]["status"]["ticket_id"] for m in _bot_messages(sio)
                          if "status" in (m.get("custom") or {}))
            reply = clerk.post(f"/api/desk/tickets/{ticket}/reply", json={"text": "您好，我是值班员。"}).json()
            assert reply["message"]["delivered"] is True  # replica b knows the socket on replica a …
            got = sio.wait_event("bot_uttered", lambda m: m.get("metadata", {}).get("sender") == "clerk")
            assert got["text"] == "您好，我是值班员。"  # … and the emit crossed over through Redis
        finally:
            sio.close()
        time.sleep(1.0)
        later = clerk.post(f"/api/desk/tickets/{ticket}/reply", json={"text": "还在吗？"}).json()
        assert later["message"]["delivered"] is False  # gone from every replica: it waits for the next message
    finally:
        for gw in replicas:
            gw.stop()


# -- the browser ---------------------------------------------------------------------------------------------------------
@pytest.mark.rasa
@pytest.mark.model
@pytest.mark.parametrize("gateway", ["sqlite"], indirect=True)
def test_widget_holds_a_conversation_in_the_browser(gateway: GatewayProcess) -> None:
    require_browser()
    SCREENS.mkdir(parents=True, exist_ok=True)
    lead = gateway.login("lead")
    scenario = Scenario("widget.mjs", {"base_url": gateway.url, "out_dir": str(SCREENS), "clerk_reply": CLERK_REPLY,
                                       "max_chars": MAX_CHARS, "timeout_ms": 60_000})
    try:
        handoff = scenario.expect("HANDOFF", timeout=240)
        ticket = handoff["ticket_id"]
        assert lead.post(f"/api/desk/tickets/{ticket}/claim").status_code == 200
        reply = lead.post(f"/api/desk/tickets/{ticket}/reply", json={"text": CLERK_REPLY}).json()
        assert reply["message"]["delivered"] is True, reply  # a socket of the session was connected
        result = scenario.expect("RESULT", timeout=240)
        scenario.finish()
    finally:
        scenario.close()
    assert result["ticket_id"] == ticket and result["rated"] == "满意" and result["typing"] is True
    assert result["clerk_label"] == "人工客服 组长"
    _assert_region(gateway, result["embed_session"], "北京")  # data-region of the embedding page
    print(f"\nwidget screenshots: {SCREENS}/widget.png, widget-answer.png, widget-elder.png, widget-mobile.png")
    for name in ("widget.png", "widget-answer.png", "widget-elder.png", "widget-mobile.png"):
        assert (SCREENS / name).stat().st_size > 10_000, name
    assert lead.post(f"/api/desk/tickets/{ticket}/resolve").status_code == 200


def _assert_region(gateway: GatewayProcess, session_id: str, region: str) -> None:
    from sqlalchemy import select

    from connectors.store import Conversation, open_database

    engine, factory = open_database(gateway.database_url)
    try:
        with factory() as s:
            conv = s.scalar(select(Conversation).where(Conversation.channel == "web", Conversation.user_id == session_id))
            assert conv is not None and conv.region == region, (session_id, conv and conv.region)
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def webchat_bundle() -> Path:
    """rasa-webchat 1.0.1's browser bundle, fetched once with `npm pack` into the machine cache (never committed)."""
    from retrieval import get_settings

    folder = get_settings().cache_dir / "npm" / WEBCHAT.replace("@", "-")
    bundle = folder / "package" / "lib" / "index.js"
    if bundle.exists():
        return bundle
    if shutil.which("npm") is None:
        pytest.fail("npm is needed to fetch rasa-webchat (npm pack)")
    work = folder.with_name(folder.name + f".tmp{time.time_ns()}")
    work.mkdir(parents=True)
    try:
        packed = subprocess.run(["npm", "pack", WEBCHAT, "--silent", "--pack-destination", str(work)],
                                capture_output=True, text=True, timeout=300)
        assert packed.returncode == 0, packed.stderr
        tgz = next(work.glob("rasa-webchat-*.tgz"))
        with tarfile.open(tgz) as tar:
            tar.extractall(work, members=[m for m in tar.getmembers() if m.name in (
                "package/lib/index.js", "package/package.json", "package/LICENSE")], filter="data")
        tgz.unlink()
        try:
            work.rename(folder)
        except OSError:  # another session got there first
            shutil.rmtree(work, ignore_errors=True)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return bundle


@pytest.mark.rasa
@pytest.mark.model
@pytest.mark.parametrize("gateway", ["sqlite"], indirect=True)
def test_rasa_webchat_talks_to_the_gateway(gateway: GatewayProcess, webchat_bundle: Path) -> None:
    require_browser()
    SCREENS.mkdir(parents=True, exist_ok=True)
    scenario = Scenario("webchat.mjs", {"base_url": gateway.url, "bundle": str(webchat_bundle),
                                        "out_dir": str(SCREENS), "timeout_ms": 60_000})
    try:
        result = scenario.expect("RESULT", timeout=240)
        scenario.finish()
    finally:
        scenario.close()
    assert "居民身份证补领" in result["answer"] and "收费标准" in result["fee"]
    # the conversation is the gateway's: stored under the web channel with rasa-webchat's session id
    from sqlalchemy import func, select

    from connectors.store import Conversation, Message, open_database

    engine, factory = open_database(gateway.database_url)
    try:
        with factory() as s:
            conv = s.scalar(select(Conversation).where(Conversation.channel == "web",
                                                       Conversation.user_id == result["session_id"]))
            assert conv is not None and conv.region == "北京"
            n = s.scalar(select(func.count(Message.id)).where(Message.conversation_id == conv.id,
                                                              Message.direction == "inbound"))
            assert n >= 3  # /greet, the question, the follow-up
    finally:
        engine.dispose()
    print(f"\nrasa-webchat screenshot: {SCREENS}/webchat.png")
