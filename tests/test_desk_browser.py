"""The clerk desk in a real browser against real peers: Debian chromium (playwright-core, tests/browser/desk.mjs)
drives /desk and /admin on a gateway process that talks to the real Rasa and action servers.

A citizen (the plain JSON channel /api/chat) asks a question the bot answers; the clerk logs in; once the page
says its queue is live, the citizen asks for a human, and the ticket must appear without a reload. The clerk
opens it with the keyboard, finds the bot's draft in the reply box, claims, answers, adds a note and saves the
answer as knowledge, raises the priority, snoozes and hands the conversation back to the bot; an admin finds the candidate on /admin, edits and approves it, and the bot then answers
with it. The citizen's conversation must hold the reply.
Screenshots go to var/browser/desk/ (desk.png, admin.png, admin-stats.png)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.browser_scenario import Scenario, require_browser
from tests.gateway_fixtures import CLERK_PASSWORD, GatewayProcess

REPO = Path(__file__).resolve().parent.parent
SCREENS = REPO / "var" / "browser" / "desk"

QUESTION = "身份证丢了怎么补办？"
MARKUP = "<img src=x onerror=alert(1)><b>请尽快</b>"
APPROVED_Q = "办理坐席演练许可证需要什么材料？"
APPROVED_A = "坐席演练许可证（仅用于自动化测试）需要：演练申请表一份、工作证复印件一份。"
REPLY = "您好，身份证丢失后请带户口簿到户籍所在地派出所申请补领，办理时现场采集照片。"


@pytest.mark.parametrize("gateway", ["sqlite"], indirect=True)
def test_clerk_answers_a_live_handoff_in_the_browser(gateway: GatewayProcess) -> None:
    require_browser()
    citizen = gateway.client()
    user = f"browser-{time.time_ns()}"

    # The citizen's question first: the bot answers it (no ticket yet), the answer names the service.
    first = citizen.post("/api/chat", json={"user_id": user, "text": QUESTION})
    assert first.status_code == 200, first.text
    assert first.json()["status"]["state"] == "bot", first.json()
    services = [m["custom"]["card"].get("service") for m in first.json()["messages"]
                if isinstance(m.get("custom"), dict) and isinstance(m["custom"].get("card"), dict)]
    assert services and services[0], f"the bot should answer {QUESTION!r} with a card: {first.json()}"

    # A clerk of the department the ticket will be routed to (clerks see their department's tickets).
    lead = gateway.login("lead")
    known = {s["id"]: s for s in lead.get("/api/desk/services").json()["services"]}
    department = (known.get(services[0]) or {}).get("department") or None
    username = f"desk{time.time_ns() % 10**8}"
    gateway.create_clerk(username, department=department, display_name="浏览器测试")

    SCREENS.mkdir(parents=True, exist_ok=True)
    scenario = Scenario("desk.mjs", {
        "base_url": gateway.url, "username": username, "password": CLERK_PASSWORD, "out_dir": str(SCREENS),
        "ticket_text": QUESTION, "markup_text": MARKUP, "reply": REPLY, "expect_draft": True, "knowledge": True,
        "hand_back": True,
        "admin": {"username": "lead", "password": CLERK_PASSWORD}, "timeout_ms": 120_000,
        # Approved as a question no other test asks, so the shared knowledge copy stays neutral for them.
        "approve": {"question": APPROVED_Q, "answer": APPROVED_A, "service": ""},
    })
    try:
        scenario.expect("READY", timeout=90)
        handoff = citizen.post("/api/chat", json={"user_id": user, "text": "转人工"})
        assert handoff.status_code == 200, handoff.text
        status = handoff.json()["status"]
        assert status["state"] == "pending" and status["ticket_id"], status
        later = citizen.post("/api/chat", json={"user_id": user, "text": MARKUP})
        assert later.status_code == 200, later.text

        result = scenario.expect("RESULT", timeout=240)
        scenario.finish()
    finally:
        scenario.close()

    assert result["ticket_id"] == status["ticket_id"]
    # The reply reached the citizen's conversation through the hub.
    history = citizen.get("/api/chat/history", params={"user_id": user}).json()
    replies = [m for m in history["messages"] if m.get("sender_kind") == "clerk"]
    assert [m["text"] for m in replies] == [REPLY], history["messages"]
    # Snoozed, then handed back from the page: the bot has the conversation again, the ticket is resolved.
    assert history["status"]["state"] == "bot", history["status"]
    ticket = lead.get(f"/api/desk/tickets/{result['ticket_id']}").json()["ticket"]
    assert (ticket["status"], ticket["priority"]) == ("resolved", 3), ticket
    # The note stayed internal.
    assert all("已电话确认" not in (m.get("text") or "") for m in history["messages"])
    assert (SCREENS / "desk.png").stat().st_size > 10_000

    # The clerk's 存为知识 (question pre-filled from the citizen) was listed on the admin page, edited there and
    # approved: the index was rebuilt, and the bot answers the new question with the new answer.
    assert result["candidate"] == QUESTION, result
    approved = {c["id"]: c for c in lead.get("/api/admin/candidates", params={"status": "approved"}).json()["candidates"]}
    assert result["approved"] and result["approved"]["id"] in approved, result
    saved = approved[result["approved"]["id"]]
    assert saved["ticket_id"] == result["ticket_id"]
    assert (saved["questions"], saved["answer"], saved["service"]) == ([APPROVED_Q], APPROVED_A, None)
    # The gateway's own knowledge service reloaded the rebuilt index at once.
    asked = citizen.post("/api/ask", json={"question": APPROVED_Q}).json()
    assert APPROVED_A in json.dumps(asked, ensure_ascii=False), asked
