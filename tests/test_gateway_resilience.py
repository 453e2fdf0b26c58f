"""Nothing a citizen says is lost: a gateway restarted (or killed) mid-conversation, Rasa or the action server
stopped, a handoff out of office hours. Real processes throughout (SQLite store)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from bot.runner import Stack, start_stack
from tests.gateway_fixtures import GatewayProcess, KnowledgeCopy, run_gateway, sqlite_url

DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def chat(gw: GatewayProcess, user: str, text: str) -> dict[str, Any]:
    r = httpx.post(f"{gw.url}/api/chat", json={"user_id": user, "text": text}, timeout=90)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def texts(gw: GatewayProcess, user: str) -> list[str]:
    r = httpx.get(f"{gw.url}/api/chat/history", params={"user_id": user, "limit": 500}, timeout=30)
    return [m["text"] or "" for m in r.json()["messages"]]


def closed_today() -> str:
    """Office hours on another weekday only, so 'now' is out of hours whenever the test runs."""
    tomorrow = (datetime.now(ZoneInfo("Asia/Shanghai")) + timedelta(days=1)).weekday()
    return f"{DAYS[tomorrow]} 09:00-17:00"


def test_restarting_the_gateway_mid_conversation_loses_nothing(tmp_path: Path, bot_stack: Stack,
                                                               kb_copy: KnowledgeCopy) -> None:
    with run_gateway(tmp_path, sqlite_url(tmp_path), bot_stack, kb_copy) as gw:
        gw.create_clerk("wang", display_name="王老师")
        said = ["身份证丢了怎么补办", "那要多少钱", "我要人工"]
        for text in said:
            chat(gw, "c1", text)
        clerk = gw.login("wang")
        ticket = clerk.get("/api/desk/queue").json()["tickets"][0]["id"]
        assert clerk.post(f"/api/desk/tickets/{ticket}/claim").status_code == 200
        before = texts(gw, "c1")

        gw.kill()  # a crash: no shutdown handlers run
        gw.start()
        assert texts(gw, "c1") == before
        # the clerk's session survives the restart (same signing key); the ticket is still theirs
        clerk = gw.login("wang")
        view = clerk.get(f"/api/desk/tickets/{ticket}").json()["ticket"]
        assert view["status"] == "open" and view["assignee"]["username"] == "wang"
        chat(gw, "c1", "还需要带户口本吗")
        clerk.post(f"/api/desk/tickets/{ticket}/reply", json={"text": "不需要户口本，带本人身份证明即可。"})

        gw.restart()  # an orderly restart (SIGTERM)
        after = texts(gw, "c1")
        for text in [*said, "还需要带户口本吗", "不需要户口本，带本人身份证明即可。"]:
            assert text in after, text
        assert after[: len(before)] == before
        gw.login("wang").post(f"/api/desk/tickets/{ticket}/hand-back")
        assert chat(gw, "c1", "护照多少钱")["messages"][-1]["sender_kind"] == "bot"


def test_bot_down_citizen_is_told_ticket_opened_nothing_lost(tmp_path: Path, rasa_model: Path,
                                                             kb_copy: KnowledgeCopy) -> None:
    with start_stack(tmp_path / "stack", rasa_model, extra_env=kb_copy.env) as stack, \
            run_gateway(tmp_path, sqlite_url(tmp_path), stack, kb_copy, GOVBOT_RASA_TIMEOUT="10",
                        GOVBOT_OFFICE_HOURS=closed_today()) as gw:
        gw.create_clerk("wang")
        assert chat(gw, "c2", "护照多少钱")["messages"][-1]["sender_kind"] == "bot"

        stack.actions.stop()  # the action server is gone: Rasa cannot answer
        body = chat(gw, "c2", "港澳通行证怎么办")
        said = [m["text"] for m in body["messages"]]
        assert any("系统繁忙" in t for t in said), said
        assert body["status"]["state"] == "pending" and body["status"]["ticket_id"]
        assert any("非工作时间" in t and "起回复您" in t for t in said), "out of hours: the citizen is told when"
        stack.rasa.stop()  # Rasa itself is gone too
        again = chat(gw, "c2", "身份证丢了怎么补办")
        assert again["status"]["ticket_id"] == body["status"]["ticket_id"], "one ticket, not one per message"

        for text in ("护照多少钱", "港澳通行证怎么办", "身份证丢了怎么补办"):
            assert text in texts(gw, "c2")
        clerk = gw.login("wang")
        tickets = clerk.get("/api/desk/queue").json()["tickets"]
        assert len(tickets) == 1 and tickets[0]["reason"] == "bot_unavailable" and tickets[0]["priority"] >= 1
        assert gw.client().get("/healthz").json()["bot"] == "down"
        assert "govbot_bot_unavailable_total 1.0" in gw.client().get("/metrics").text
        # the clerk's answer reaches the citizen even though the bot is down
        clerk.post(f"/api/desk/tickets/{tickets[0]['id']}/reply", json={"text": "港澳通行证可在出入境窗口办理。"})
        assert "港澳通行证可在出入境窗口办理。" in texts(gw, "c2")


def test_json_channel_speaks_for_users_only_with_the_api_token(tmp_path: Path, kb_copy: KnowledgeCopy) -> None:
    """/api/chat names any user_id, so it is for trusted systems: a bearer token, or loopback when none is set."""
    from fastapi.testclient import TestClient

    from connectors.config import GatewaySettings
    from connectors.gateway import build_gateway
    from retrieval import KnowledgeService, Settings

    settings = GatewaySettings(database_url=sqlite_url(tmp_path), rasa_url="http://127.0.0.1:9", rasa_token="x",
                               secret_key="test", api_token="s3cret-token")
    gw = build_gateway(settings, KnowledgeService(Settings(corpus_dir=kb_copy.corpus_dir, index_dir=kb_copy.index_dir)))
    body = {"user_id": "partner-1", "text": "护照多少钱"}
    with TestClient(gw.asgi) as c:
        assert c.post("/api/chat", json=body).status_code == 401
        assert c.get("/api/chat/history", params={"user_id": "partner-1"}).status_code == 401
        assert c.post("/api/chat", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = c.post("/api/chat", json=body, headers={"Authorization": "Bearer s3cret-token"})
        assert ok.status_code == 200 and ok.json()["messages"], ok.text  # (Rasa is down here: 系统繁忙 + ticket)
    settings.api_token = ""
    with TestClient(build_gateway(settings, gw.kb).asgi, client=("203.0.113.7", 50000)) as c:
        refused = c.post("/api/chat", json=body)
        assert refused.status_code == 403 and "GOVBOT_API_TOKEN" in refused.json()["detail"]


def test_desk_sees_tickets_opened_on_another_replica_through_redis(tmp_path: Path, bot_stack: Stack,
                                                                   kb_copy: KnowledgeCopy) -> None:
    """Two gateway processes sharing one store and Redis (DESIGN §5): a clerk's live queue on replica b shows a
    ticket the bot opened on replica a, and a message the citizen sends there."""
    import asyncio
    import json

    import websockets

    from bot.runner import free_port
    from tests.gateway_fixtures import GatewayProcess, gateway_env

    database = sqlite_url(tmp_path)
    replicas: list[GatewayProcess] = []
    try:
        for name in ("a", "b"):  # one after the other: the first creates the database
            (tmp_path / name).mkdir()
            env = gateway_env(database, bot_stack, kb_copy, GOVBOT_REDIS_URL="redis://127.0.0.1:6379/0")
            replicas.append(GatewayProcess(free_port(), env, tmp_path / name / "gateway.log").start())
        a, b = replicas
        b.create_clerk("wang")
        clerk = b.login("wang")
        cookie = "; ".join(f"{k}={v}" for k, v in clerk.cookies.items())

        async def scenario() -> None:
            async with websockets.connect(f"ws://127.0.0.1:{b.port}/desk/ws",
                                          additional_headers={"Cookie": cookie}) as ws:
                assert json.loads(await ws.recv())["type"] == "hello"
                await asyncio.sleep(0.5)  # the relay subscribes right after start-up
                body = await asyncio.to_thread(chat, a, "r1", "我要人工")
                ticket = body["status"]["ticket_id"]
                await asyncio.to_thread(chat, a, "r1", "请快一点")
                seen_ticket = seen_message = False
                while not (seen_ticket and seen_message):
                    event = json.loads(await asyncio.wait_for(ws.recv(), 20))
                    seen_ticket |= event["type"] == "ticket" and event["ticket"]["id"] == ticket
                    seen_message |= event["type"] == "message" and event["message"]["text"] == "请快一点"
        asyncio.run(scenario())
    finally:
        for gw in replicas:
            gw.stop()
