"""The gateway against the real Rasa and action servers, on SQLite and on PostgreSQL (the `gateway` fixture runs
every test here once per database): the hub, handoff tickets, the desk API and its websocket, admin, privacy."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from typing import Any

import httpx
import pytest
import websockets

from tests.gateway_fixtures import GatewayProcess

ID_NUMBER = "110101199003071234"
PHONE = "13812345678"


def chat(gw: GatewayProcess, user: str, text: str) -> dict[str, Any]:
    r = httpx.post(f"{gw.url}/api/chat", json={"user_id": user, "text": text}, timeout=60)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def history(gw: GatewayProcess, user: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{gw.url}/api/chat/history", params={"user_id": user}, timeout=30)
    assert r.status_code == 200, r.text
    messages: list[dict[str, Any]] = r.json()["messages"]
    return messages


def hand_off(gw: GatewayProcess, user: str, first: str = "身份证丢了怎么补办") -> int:
    """A citizen asks, then asks for a person; returns the ticket id."""
    chat(gw, user, first)
    body = chat(gw, user, "我要人工")
    ticket = body["status"]["ticket_id"]
    assert body["status"]["state"] == "pending" and ticket, body
    return int(ticket)


def user() -> str:
    return f"citizen-{secrets.token_hex(4)}"


def test_health_docs_and_metrics(gateway: GatewayProcess) -> None:
    c = gateway.client()
    health = c.get("/healthz").json()
    assert health["status"] == "ok" and health["bot"] == "up"
    assert c.get("/docs").status_code == 200
    paths = c.get("/openapi.json").json()["paths"]
    assert {"/api/chat", "/api/desk/queue", "/api/admin/stats"} <= set(paths)
    chat(gateway, user(), "护照多少钱")
    metrics = c.get("/metrics").text
    assert 'govbot_messages_total{channel="api",direction="inbound",sender="citizen"}' in metrics
    assert "govbot_bot_reply_seconds_bucket" in metrics and 'govbot_tickets{status="pending"}' in metrics


def test_every_message_is_stored_and_answers_carry_cards(gateway: GatewayProcess) -> None:
    u = user()
    body = chat(gateway, u, "身份证丢了怎么补办")
    cards = [m["custom"]["card"] for m in body["messages"] if (m.get("custom") or {}).get("card")]
    assert cards and cards[0]["service"] == "id-card-reissue", body
    follow = chat(gateway, u, "那要多少钱")
    assert any((m.get("custom") or {}).get("card", {}).get("aspect") == "fee" for m in follow["messages"]), follow
    kinds = [m["sender_kind"] for m in history(gateway, u)]
    assert kinds[0] == "citizen" and kinds.count("citizen") == 2 and "bot" in kinds


async def _next_event(ws: Any, kind: str, match: Any, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {kind} event matching within {timeout} s")
        event = json.loads(await asyncio.wait_for(ws.recv(), left))
        if event.get("type") == kind and match(event):
            return dict(event)


def test_handoff_end_to_end_with_live_desk(gateway: GatewayProcess) -> None:
    """Bot hands off → the ticket appears live on the desk socket → claim, reply → the citizen gets the reply →
    resolve → hand back → the bot answers again."""
    clerk = gateway.login("wang")
    u = user()

    async def scenario() -> int:
        cookie = "; ".join(f"{k}={v}" for k, v in clerk.cookies.items())
        async with websockets.connect(f"ws://127.0.0.1:{gateway.port}/desk/ws",
                                      additional_headers={"Cookie": cookie}) as ws:
            hello = json.loads(await ws.recv())
            assert hello["type"] == "hello"
            ticket_id = await asyncio.to_thread(hand_off, gateway, u, "港澳通行证怎么办")
            event = await _next_event(ws, "ticket", lambda e: e["ticket"]["id"] == ticket_id)
            assert event["ticket"]["status"] == "pending" and event["ticket"]["reason"] == "requested"
            # the citizen writes while waiting: the desk sees it live
            await asyncio.to_thread(chat, gateway, u, "我还想问一下加急")
            msg = await _next_event(ws, "message", lambda e: e.get("ticket_id") == ticket_id
                                    and e["message"]["text"] == "我还想问一下加急")
            assert msg["message"]["direction"] == "inbound"
            return ticket_id

    ticket_id = asyncio.run(scenario())
    queue = clerk.get("/api/desk/queue").json()["tickets"]
    mine = next(t for t in queue if t["id"] == ticket_id)
    assert mine["channel"] == "api" and mine["waited_s"] >= 0 and mine["sla_s"] > 0

    detail = clerk.get(f"/api/desk/tickets/{ticket_id}").json()
    texts = [m["text"] for m in detail["messages"]]
    assert "港澳通行证怎么办" in texts and "我要人工" in texts
    assert detail["draft"].startswith("您好") and len(detail["draft"]) > 20
    assert detail["canned"]

    r = clerk.post(f"/api/desk/tickets/{ticket_id}/claim")
    assert r.status_code == 200 and r.json()["ticket"]["status"] == "open"
    assert r.json()["ticket"]["assignee"]["username"] == "wang"
    clerk.post(f"/api/desk/tickets/{ticket_id}/note", json={"text": "内部备注：需核实户籍"})
    reply = clerk.post(f"/api/desk/tickets/{ticket_id}/reply", json={"text": "您好，加急请到出入境窗口申请。"})
    assert reply.status_code == 200, reply.text

    seen = history(gateway, u)
    texts = [m["text"] for m in seen]
    assert "您好，加急请到出入境窗口申请。" in texts
    assert "内部备注：需核实户籍" not in texts, "internal notes never reach the citizen"
    assert any("王老师" in (t or "") for t in texts), "the citizen is told who took over"
    # while the clerk holds the conversation, the bot stays silent
    during = chat(gateway, u, "好的谢谢")
    assert all(m["sender_kind"] != "bot" for m in during["messages"])

    assert clerk.post(f"/api/desk/tickets/{ticket_id}/resolve").json()["ticket"]["status"] == "resolved"
    back = clerk.post(f"/api/desk/tickets/{ticket_id}/hand-back")
    assert back.status_code == 200, back.text
    assert chat(gateway, u, "护照多少钱")["messages"][-1]["sender_kind"] == "bot"
    again = history(gateway, u)
    assert any((m.get("custom") or {}).get("card", {}).get("aspect") == "fee" for m in again[-3:]), again[-3:]


def test_queue_order_claim_conflict_transfer_and_snooze(gateway: GatewayProcess) -> None:
    wang, zhou, li, lead = (gateway.login(n) for n in ("wang", "zhou", "li", "lead"))
    first, second = hand_off(gateway, user()), hand_off(gateway, user())
    ids = [t["id"] for t in lead.get("/api/desk/queue").json()["tickets"]]
    assert ids.index(first) < ids.index(second), "the longest wait first"
    lead.post(f"/api/desk/tickets/{second}/priority", json={"priority": 2})
    ids = [t["id"] for t in lead.get("/api/desk/queue").json()["tickets"]]
    assert ids.index(second) < ids.index(first), "priority before waiting time"

    assert wang.post(f"/api/desk/tickets/{first}/claim").status_code == 200
    taken = zhou.post(f"/api/desk/tickets/{first}/claim")
    assert taken.status_code == 409 and "wang" in taken.json()["detail"]
    # a lead assigns to a clerk, a clerk hands a ticket to a department
    li_id = next(c["id"] for c in lead.get("/api/desk/clerks").json()["clerks"] if c["username"] == "li")
    moved = lead.post(f"/api/desk/tickets/{second}/transfer", json={"clerk_id": li_id}).json()["ticket"]
    assert moved["assignee"]["username"] == "li" and moved["status"] == "open"
    dept = wang.post(f"/api/desk/tickets/{first}/transfer", json={"department": "市公安局"}).json()["ticket"]
    assert dept["status"] == "pending" and dept["assignee"] is None and dept["department"] == "市公安局"
    assert li.post(f"/api/desk/tickets/{first}/claim").status_code == 200
    snoozed = li.post(f"/api/desk/tickets/{first}/snooze", json={"minutes": 30}).json()["ticket"]
    assert snoozed["status"] == "snoozed" and snoozed["snoozed_until"]
    assert li.post(f"/api/desk/tickets/{first}/snooze", json={"minutes": 0}).status_code == 422
    for t in (first, second):
        lead.post(f"/api/desk/tickets/{t}/resolve")


def test_snoozed_ticket_reopens_when_the_citizen_writes(gateway: GatewayProcess) -> None:
    wang = gateway.login("wang")
    u = user()
    ticket = hand_off(gateway, u)
    wang.post(f"/api/desk/tickets/{ticket}/reply", json={"text": "请问您的户籍在哪个区？"})
    assert wang.post(f"/api/desk/tickets/{ticket}/snooze", json={"minutes": 60}).status_code == 200
    chat(gateway, u, "在海淀区")
    view = wang.get(f"/api/desk/tickets/{ticket}").json()["ticket"]
    assert view["status"] == "open" and view["snoozed_until"] is None
    wang.post(f"/api/desk/tickets/{ticket}/resolve")


def test_desk_and_admin_need_login_role_and_csrf(gateway: GatewayProcess) -> None:
    anon = gateway.client()
    assert anon.get("/api/desk/queue").status_code == 401
    assert anon.get("/api/admin/stats").status_code == 401
    assert "登录" in anon.get("/api/desk/queue").json()["detail"]
    bad = anon.post("/api/auth/login", json={"username": "wang", "password": "wrong-password"})
    assert bad.status_code == 401
    assert anon.post("/api/auth/login", json={"username": "wang"}).status_code == 422
    wang = gateway.login("wang")
    assert wang.get("/api/admin/stats").status_code == 403
    cookie = wang.cookies.get("govbot_session")
    assert cookie and "httponly" in wang.post("/api/auth/login", json={
        "username": "wang", "password": "desk-pass-2026"}).headers["set-cookie"].lower()
    no_csrf = httpx.post(f"{gateway.url}/api/admin/reload", cookies={"govbot_session": cookie})
    assert no_csrf.status_code in (403, 401)
    ticket = hand_off(gateway, user())
    forged = httpx.post(f"{gateway.url}/api/desk/tickets/{ticket}/claim", cookies={"govbot_session": cookie},
                        headers={"X-CSRF-Token": "forged"})
    assert forged.status_code == 403 and "CSRF" in forged.json()["detail"]
    tampered = httpx.get(f"{gateway.url}/api/desk/queue", cookies={"govbot_session": cookie[:-3] + "abc"})
    assert tampered.status_code == 401

    async def ws_without_login() -> None:
        with pytest.raises(websockets.exceptions.WebSocketException):
            async with websockets.connect(f"ws://127.0.0.1:{gateway.port}/desk/ws") as ws:
                await asyncio.wait_for(ws.recv(), 10)
    asyncio.run(ws_without_login())
    wang.post(f"/api/desk/tickets/{ticket}/resolve")


def test_bad_input_gets_clear_4xx_and_nothing_is_stored(gateway: GatewayProcess) -> None:
    u = user()
    c = gateway.client()
    huge = c.post("/api/chat", content=b'{"user_id":"x","text":"' + b"a" * 70000 + b'"}',
                  headers={"content-type": "application/json"})
    assert huge.status_code == 413 and "过大" in huge.json()["detail"]
    malformed = c.post("/api/chat", content=b'{"user_id": "x", "text": ', headers={"content-type": "application/json"})
    assert malformed.status_code == 422 and "invalid request" in malformed.json()["detail"]
    empty = c.post("/api/chat", json={"user_id": u, "text": "   "})
    assert empty.status_code == 422 and "不能为空" in empty.json()["detail"]
    long = c.post("/api/chat", json={"user_id": u, "text": "问" * 1001})
    assert long.status_code == 422 and "太长" in long.json()["detail"]
    assert history(gateway, u) == []
    assert c.post("/api/chat/rating", json={"user_id": u, "score": 6}).status_code == 422
    lead = gateway.login("lead")
    assert lead.get("/api/desk/tickets/999999").status_code == 404
    assert lead.post("/api/desk/tickets/999999/claim").status_code == 404


def test_rating_is_stored_with_the_conversation(gateway: GatewayProcess) -> None:
    u = user()
    body = chat(gateway, u, "护照多少钱")
    answer_id = body["messages"][-1]["id"]
    ok = httpx.post(f"{gateway.url}/api/chat/rating", json={"user_id": u, "score": 5, "message_id": answer_id})
    assert ok.status_code == 200
    other = httpx.post(f"{gateway.url}/api/chat/rating", json={"user_id": user(), "score": 4})
    assert other.status_code == 422, "rating a conversation that does not exist"
    stats = gateway.login("lead").get("/api/admin/stats").json()
    assert stats["satisfaction"]["count"] >= 1 and stats["satisfaction"]["by_score"]["5"] >= 1


def test_pii_is_masked_in_stats_audit_metrics_and_logs_but_not_for_the_clerk(gateway: GatewayProcess) -> None:
    u = user()
    ticket = hand_off(gateway, u)
    chat(gateway, u, f"我的身份证号是{ID_NUMBER}，电话{PHONE}")
    wang = gateway.login("wang")
    detail = wang.get(f"/api/desk/tickets/{ticket}").json()
    assert any(ID_NUMBER in (m["text"] or "") for m in detail["messages"]), "the handling clerk sees the number"
    queue_item = next(t for t in wang.get("/api/desk/queue").json()["tickets"] if t["id"] == ticket)
    assert ID_NUMBER not in queue_item["last_message"] and "110***" in queue_item["last_message"]
    wang.post(f"/api/desk/tickets/{ticket}/reply", json={"text": f"已核实 {PHONE} 的预约"})
    lead = gateway.login("lead")
    dumps = json.dumps(lead.get("/api/admin/audit").json(), ensure_ascii=False)
    assert PHONE not in dumps and "138****5678" in dumps
    assert ID_NUMBER not in json.dumps(lead.get("/api/admin/stats").json(), ensure_ascii=False)
    assert ID_NUMBER not in gateway.client().get("/metrics").text
    assert ID_NUMBER not in gateway.log() and PHONE not in gateway.log()
    wang.post(f"/api/desk/tickets/{ticket}/resolve")


def test_saved_knowledge_is_reviewed_approved_and_answered_by_the_bot(gateway: GatewayProcess) -> None:
    """「存为知识」 → admin edits and approves → FAQ file + new index, reloaded without restart → the bot and the
    knowledge API answer the new question."""
    question = f"政务大厅停车场晚上{secrets.randbelow(90) + 10}点关门吗"
    answer = "政务服务大厅停车场开放时间为每天7:00至22:00，22:00后关闭，夜间请停放在周边公共停车场。"
    wang, lead = gateway.login("wang"), gateway.login("lead")
    u = user()
    ticket = hand_off(gateway, u, question)
    wang.post(f"/api/desk/tickets/{ticket}/reply", json={"text": answer})
    saved = wang.post(f"/api/desk/tickets/{ticket}/knowledge", json={"questions": [question], "answer": answer})
    assert saved.status_code == 200, saved.text
    cid = saved.json()["candidate"]["id"]
    assert wang.post(f"/api/admin/candidates/{cid}/approve").status_code == 403
    drafts = lead.get("/api/admin/candidates").json()["candidates"]
    assert any(c["id"] == cid for c in drafts)
    edited = lead.put(f"/api/admin/candidates/{cid}", json={"questions": [question, "政务大厅停车场几点关门"],
                                                             "answer": answer})
    assert edited.status_code == 200
    approved = lead.post(f"/api/admin/candidates/{cid}/approve")
    assert approved.status_code == 200, approved.text
    assert approved.json()["candidate"]["status"] == "approved" and approved.json()["candidate"]["reloaded"]
    assert lead.post(f"/api/admin/candidates/{cid}/approve").status_code == 409
    asked = gateway.client().post("/api/ask", json={"question": "政务大厅停车场几点关门"}).json()
    assert asked["candidates"][0]["id"].startswith(f"desk-{cid}-"), asked["candidates"][:2]
    wang.post(f"/api/desk/tickets/{ticket}/hand-back")
    time.sleep(2.5)  # the action server looks for a newer index every 2 s
    replies = chat(gateway, user(), "政务大厅停车场几点关门")["messages"]
    assert any("22:00" in (m["text"] or "") for m in replies), replies


def test_admin_manages_clerks_and_sees_statistics(gateway: GatewayProcess) -> None:
    lead = gateway.login("lead")
    name = f"zhao{secrets.token_hex(3)}"
    made = lead.post("/api/admin/clerks", json={"username": name, "password": "short"})
    assert made.status_code == 422
    made = lead.post("/api/admin/clerks", json={"username": name, "password": "a-long-password", "role": "clerk",
                                                 "department": "市医保局"})
    assert made.status_code == 201, made.text
    assert lead.post("/api/admin/clerks", json={"username": name, "password": "a-long-password"}).status_code == 409
    zhao = gateway.login(name, "a-long-password")
    assert zhao.get("/api/desk/queue").status_code == 200
    cid = made.json()["clerk"]["id"]
    assert lead.put(f"/api/admin/clerks/{cid}", json={"active": False}).status_code == 200
    assert zhao.get("/api/desk/queue").status_code == 401, "a deactivated account's session ends"
    stats = lead.get("/api/admin/stats").json()
    for key in ("conversations", "handoff_rate", "answered_share", "wait_p50_s", "satisfaction", "tickets_by_status"):
        assert key in stats
    assert 0 < stats["handoff_rate"] <= 1 and 0 <= stats["answered_share"] <= 1
    actions = {e["action"] for e in lead.get("/api/admin/audit").json()["entries"]}
    assert {"login", "clerk_create", "clerk_update"} <= actions


def test_resolved_without_hand_back_the_next_message_goes_to_the_bot(gateway: GatewayProcess) -> None:
    wang = gateway.login("wang")
    u = user()
    ticket = hand_off(gateway, u)
    wang.post(f"/api/desk/tickets/{ticket}/reply", json={"text": "已为您登记。"})
    assert wang.post(f"/api/desk/tickets/{ticket}/resolve").status_code == 200
    body = chat(gateway, u, "护照多少钱")
    assert body["status"]["state"] == "bot" and body["status"]["ticket_id"] is None, body["status"]
    assert body["messages"][-1]["sender_kind"] == "bot" and "系统繁忙" not in json.dumps(body, ensure_ascii=False)


def test_two_clerks_claiming_at_once_one_wins(gateway: GatewayProcess) -> None:
    from concurrent.futures import ThreadPoolExecutor

    wang, zhou = gateway.login("wang"), gateway.login("zhou")
    for _ in range(3):
        ticket = hand_off(gateway, user())
        with ThreadPoolExecutor(2) as pool:
            url = f"/api/desk/tickets/{ticket}/claim"
            codes = sorted(pool.map(lambda c, url=url: c.post(url).status_code, (wang, zhou)))
        assert codes == [200, 409], codes
        status = wang.get(f"/api/desk/tickets/{ticket}").json()
        joined = [m for m in status["messages"] if m["sender_kind"] == "system" and "已接入" in (m["text"] or "")]
        assert len(joined) == 1, "the citizen is told once who took over"
        holder = wang if status["ticket"]["assignee"]["username"] == "wang" else zhou
        assert holder.post(f"/api/desk/tickets/{ticket}/resolve").status_code == 200


def test_one_knowledge_update_at_a_time_across_replicas(gateway: GatewayProcess) -> None:
    """Another replica building the index (its key in the shared store) → 409 here; once it is done → 200."""
    from connectors.kv import KV
    from connectors.store import open_database

    lead = gateway.login("lead")
    engine, factory = open_database(gateway.database_url)
    try:
        kv = KV(factory)
        assert kv.add_once("knowledge:build", 60)
        busy = lead.post("/api/admin/reload")
        assert busy.status_code == 409 and "正在进行" in busy.json()["detail"]
        kv.delete("knowledge:build")
        done = lead.post("/api/admin/reload")
        assert done.status_code == 200, done.text
        assert kv.get("knowledge:build") is None, "the lock is released after the build"
    finally:
        engine.dispose()
