"""The action server (bot/actions, rasa-sdk 3.21.1 on Python 3.11).

- protocol: the real server, called by Rasa 3.6's own client code (tests/rasa36_probe.py in .venv-rasa) and by a
  raw POST of the exact JSON Rasa 3.6 sends — proves the two speak the same action protocol;
- behaviour: every action run in-process against the real knowledge base, with trackers shaped as Rasa sends them.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest
import yaml

from bot import runner
from bot.runner import RASA_PYTHON, REPO, actions_proc, free_port, http_get, http_post_json, wait_healthy

DOMAIN_FILE = REPO / "bot" / "domain.yml"


def _domain() -> dict[str, Any]:
    if not DOMAIN_FILE.exists():
        pytest.skip("bot/domain.yml is not there yet (dialogue core)")
    return yaml.safe_load(DOMAIN_FILE.read_text(encoding="utf-8"))


# -- the real server ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def action_server(tmp_path_factory: pytest.TempPathFactory, kb: Any, settings: Any) -> Iterator[str]:
    """The real server, answering from the index the `kb` fixture built of the bundled corpus."""
    log = runner.Printer(None, tmp_path_factory.mktemp("actions") / "actions.log")
    proc = actions_proc(free_port(), log, {"GOVBOT_INDEX_DIR": str(settings.index_root)}).start()
    port = proc.argv[proc.argv.index("--port") + 1]
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(proc, f"{url}/health", lambda status, body: status == 200 and '"ok"' in body, 300)
        yield url
    finally:
        proc.stop()
        log.close()
    assert proc.popen is not None and proc.popen.returncode == 0, "SIGINT must stop the action server cleanly"


@pytest.mark.model
def test_health_and_every_domain_action_is_served(action_server: str) -> None:
    status, body = http_get(f"{action_server}/health")
    assert status == 200 and json.loads(body) == {"status": "ok"}
    status, body = http_get(f"{action_server}/actions")
    served = {a["name"] for a in json.loads(body)}
    custom = {a for a in _domain()["actions"] if not a.startswith("utter_")}
    assert custom <= served, custom - served


@pytest.mark.model
def test_listens_on_loopback_only(action_server: str) -> None:
    port = int(action_server.rsplit(":", 1)[1])
    out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=False).stdout
    if not out.strip():
        pytest.skip("ss is not available")
    assert all("127.0.0.1:" in line for line in out.splitlines()), out


@pytest.fixture(scope="module")
def probe(action_server: str) -> dict[str, Any]:
    """Rasa 3.6 (in .venv-rasa) runs the scenarios of tests/rasa36_probe.py against the live server."""
    if not RASA_PYTHON.exists():
        pytest.skip(".venv-rasa is missing (make venvs)")
    _domain()
    env = {**os.environ, **runner.QUIET_ENV, "PYTHONPATH": str(REPO)}
    done = subprocess.run([str(RASA_PYTHON), str(REPO / "tests" / "rasa36_probe.py"), "--url",
                           f"{action_server}/webhook", "--domain", str(DOMAIN_FILE)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("PROBE-RESULT ")), None)
    assert done.returncode == 0 and line, done.stderr[-3000:]
    return json.loads(line[len("PROBE-RESULT "):])


def _bot(step: dict[str, Any]) -> list[dict[str, Any]]:
    return step["bot"]


@pytest.mark.rasa
@pytest.mark.model
def test_rasa36_request_is_answered_in_rasa36_shape(probe: dict[str, Any], action_server: str) -> None:
    request = probe["first_request"]
    assert probe["rasa_version"].startswith("3.6.")
    assert set(request) >= {"next_action", "sender_id", "tracker", "domain", "version"}
    assert request["version"] == probe["rasa_version"]
    status, body = http_post_json(f"{action_server}/webhook", request)  # byte-for-byte what rasa run posts
    assert status == 200 and isinstance(body, dict)
    assert set(body) == {"events", "responses"}
    assert all(isinstance(e, dict) and "event" in e for e in body["events"])
    assert all(isinstance(r, dict) for r in body["responses"])
    assert any(e["event"] == "followup" and e["name"] == "situation_form" for e in body["events"])


@pytest.mark.rasa
@pytest.mark.model
def test_rasa36_runs_the_materials_flow(probe: dict[str, Any]) -> None:
    answer, ask, validate, personal, fee = probe["scenarios"]["materials"]
    assert [e["event"] for e in answer["events"]][-1] == "followup"  # 一次告知: ask the 情形 first
    buttons = _bot(ask)[0]["data"]["buttons"]
    assert [b["payload"] for b in buttons][:2] == ['/inform{"situation": "adult"}', '/inform{"situation": "minor"}']
    assert validate["slots"]["situation"] == "adult"
    card = _bot(personal)[0]["data"]["custom"]["card"]
    assert card["service"] == "id-card-reissue" and card["aspect"] == "materials"
    assert card["situation"] == "年满十六周岁本人办理"
    assert card["source"]["guide"] == "id-card-reissue" and card["source"]["updated"]
    assert _bot(personal)[0]["text"].startswith("【居民身份证补领】申请材料")
    # metadata round trip: Rasa stored the bot message's metadata and sent it back in the next request
    assert _bot(personal)[0]["metadata"]["govbot"]["kind"] == "answer"
    assert _bot(fee)[0]["data"]["custom"]["card"]["aspect"] == "fee"
    assert _bot(fee)[0]["data"]["custom"]["card"]["service"] == "id-card-reissue"


@pytest.mark.rasa
@pytest.mark.model
def test_rasa36_next_candidate_clarify_and_handoff(probe: dict[str, Any]) -> None:
    first, nxt = probe["scenarios"]["next"]
    assert first["slots"]["service"] == "id-card-reissue"
    assert nxt["slots"]["service"] != "id-card-reissue"
    assert nxt["slots"]["service"] == first["slots"]["candidates"][1]
    assert _bot(nxt)[-1]["data"]["custom"]["card"]["aspect"] == "fee"

    clarify, again = probe["scenarios"]["clarify"]
    payloads = [b["payload"] for b in _bot(clarify)[0]["data"]["buttons"]]
    assert payloads[-1] == "/request_human"
    assert all(p.startswith('/inform{"service": ') for p in payloads[:-1]) and len(payloads) >= 2
    assert not clarify["paused"]
    handoff = _bot(again)[0]["data"]["custom"]["handoff"]
    assert handoff["reason"] == "still_unsure" and again["paused"]
    assert [c["id"] for c in handoff["candidates"]][: len(payloads) - 1] == clarify["slots"]["candidates"]

    asked, ignored = probe["scenarios"]["handoff"]
    payload = _bot(asked)[0]["data"]["custom"]["handoff"]
    assert set(payload) == {"reason", "service", "aspect", "candidates", "confidence"}
    assert payload["reason"] == "requested" and asked["paused"] and asked["slots"]["handed_off"] is True
    assert ignored.get("ignored_because_paused")


# -- behaviour, in-process --------------------------------------------------------------------------------------------
class Chat:
    """A tracker as Rasa 3.6 sends it, advanced by the events the actions return (slot mappings included)."""

    def __init__(self, domain: dict[str, Any], sender: str = "t") -> None:
        from rasa_sdk.executor import ActionExecutor

        self.domain = domain
        self.sender = sender
        self.slots: dict[str, Any] = {name: None for name in domain["slots"]}
        self.slots["handed_off"] = False
        self.events: list[dict[str, Any]] = [{"event": "action", "name": "action_listen"}]
        self.latest: dict[str, Any] = {}
        self.paused = False
        self.active_loop: dict[str, Any] = {}
        self.executor = ActionExecutor()
        self.executor.register_package("bot.actions")
        self.followup: Optional[str] = None

    def user(self, text: str, intent: str, service_candidates: Optional[list[str]] = None, **entities: str) -> Chat:
        ents = [{"entity": k, "value": v, "start": 0, "end": 0} for k, v in entities.items()]
        self.latest = {"text": text, "intent": {"name": intent, "confidence": 0.99}, "entities": ents}
        if service_candidates:  # what nlu.rasa_components.ServiceLinker adds for an ambiguous mention
            self.latest["service_candidates"] = service_candidates
        self.events.append({"event": "user", "text": text, "parse_data": self.latest, "timestamp": time.time()})
        for k, v in entities.items():
            if k in self.slots:
                self.set(k, v)
        return self

    def set(self, name: str, value: Any) -> None:
        self.slots[name] = value
        self.events.append({"event": "slot", "name": name, "value": value})

    def run(self, action: str) -> list[dict[str, Any]]:
        """Run one action; returns the bot messages it sent. Applies its events like Rasa does."""
        call = {"next_action": action, "sender_id": self.sender, "version": "3.6.21", "domain": self.domain,
                "tracker": {"sender_id": self.sender, "slots": dict(self.slots), "latest_message": self.latest,
                            "events": list(self.events), "paused": self.paused, "followup_action": None,
                            "active_loop": self.active_loop, "latest_action_name": self.events[-1].get("name")}}
        result = asyncio.run(self.executor.run(call))
        assert result is not None
        out = result.model_dump()
        self.events.append({"event": "action", "name": action})
        bots = []
        for r in out["responses"]:
            meta = {k: v for k, v in r.items() if k not in {"text", "buttons", "elements", "custom", "template",
                                                                "response", "image", "attachment"} and v}
            bot = {"event": "bot", "text": r.get("text"), "metadata": meta,
                   "data": {"buttons": r.get("buttons") or None, "custom": r.get("custom") or None}}
            self.events.append(bot)
            bots.append({**r, "metadata": meta})
        self.followup = None
        for e in out["events"]:
            self.events.append(e)
            if e["event"] == "slot":
                self.slots[e["name"]] = e["value"]
            elif e["event"] == "pause":
                self.paused = True
            elif e["event"] == "followup":
                self.followup = e["name"]
            elif e["event"] == "active_loop":
                self.active_loop = {"name": e["name"]} if e["name"] else {}
        return bots


def cards(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m["custom"]["card"] for m in messages if (m.get("custom") or {}).get("card")]


@pytest.fixture(scope="module")
def actions_kb(kb: Any) -> Any:  # the conftest knowledge service (fresh index of the bundled corpus)
    from bot.actions import common

    common.set_kb(kb)
    return kb


@pytest.fixture
def chat(actions_kb: Any) -> Chat:
    return Chat(_domain())


@pytest.mark.model
def test_follow_up_keeps_the_service_and_changes_the_aspect(chat: Chat, actions_kb: Any) -> None:
    from retrieval.answers import field_items

    chat.user("补办身份证要多久", "ask_time_limit", service="id-card-reissue")
    first = cards(chat.run("action_answer"))
    assert [c["aspect"] for c in first] == ["time_limit"]
    chat.user("那要多少钱", "ask_fee")
    (card,) = cards(chat.run("action_answer"))
    guide = actions_kb.retriever.data.corpus.guides["id-card-reissue"]
    assert card["service"] == "id-card-reissue" and card["items"] == field_items(guide, "fee")
    assert card["confidence"] is not None and card["source"]["field"] == "收费标准"


@pytest.mark.model
def test_materials_with_situations_ask_once_then_answer_personalised(chat: Chat, actions_kb: Any) -> None:
    from retrieval.answers import field_items

    chat.user("身份证丢了要带什么", "ask_materials", service="id-card-reissue")
    assert chat.run("action_answer") == [] and chat.followup == "situation_form"
    chat.active_loop = {"name": "situation_form"}
    (ask,) = chat.run("action_ask_situation")
    assert [b["title"] for b in ask["buttons"]][-1] == "不确定，列出全部材料"
    chat.set("requested_slot", "situation")
    chat.user("未满十六周岁的", "inform")  # typed, not clicked
    chat.run("validate_situation_form")
    assert chat.slots["situation"] == "minor"
    chat.active_loop = {}
    (card,) = cards(chat.run("action_answer"))
    guide = actions_kb.retriever.data.corpus.guides["id-card-reissue"]
    assert card["items"] == field_items(guide, "materials", "minor")
    assert card["situation"] == "未满十六周岁（由监护人陪同）"
    # a different service later: the old 情形 does not leak into it
    chat.user("护照要带什么材料", "ask_materials", service="passport")
    chat.run("action_answer")
    assert chat.followup == "situation_form" and chat.slots["situation"] is None


@pytest.mark.model
def test_a_typed_situation_completes_the_form_whatever_its_intent(chat: Chat, actions_kb: Any) -> None:
    from retrieval.answers import field_items

    chat.user("补办身份证要什么材料", "ask_materials", service="id-card-reissue")
    chat.run("action_answer")
    chat.active_loop = {"name": "situation_form"}
    chat.run("action_ask_situation")
    chat.set("requested_slot", "situation")
    chat.user("我是本人办理", "ask_service")  # NLU may read it as a new question
    chat.run("validate_situation_form")
    chat.active_loop = {}
    (card,) = cards(chat.run("action_answer"))
    guide = actions_kb.retriever.data.corpus.guides["id-card-reissue"]
    assert card["aspect"] == "materials" and card["items"] == field_items(guide, "materials", "adult")


@pytest.mark.model
def test_not_this_one_moves_through_the_candidates_then_hands_off(chat: Chat) -> None:
    chat.user("身份证", "nlu_fallback")
    (clarify,) = chat.run("action_clarify")
    offered = chat.slots["candidates"]
    assert len(offered) >= 2 and [b["payload"] for b in clarify["buttons"]][-1] == "/request_human"
    chat.user("/inform" + json.dumps({"service": offered[0]}), "inform", service=offered[0])
    assert cards(chat.run("action_answer"))[0]["service"] == offered[0]
    seen = [offered[0]]
    for _ in range(len(offered) - 1):
        chat.user("不是这个", "deny")
        got = cards(chat.run("action_next_candidate"))
        assert got and got[0]["service"] not in seen
        seen.append(got[0]["service"])
    assert seen == offered


@pytest.mark.model
def test_an_ambiguous_mention_is_not_answered_with_the_previous_service(chat: Chat) -> None:
    chat.user("办护照多少钱", "ask_fee", service="passport")
    chat.run("action_answer")
    ids = ["id-card-apply", "id-card-reissue", "id-card-renew", "id-card-temporary"]
    chat.user("身份证要带什么", "ask_materials", service_candidates=ids)  # the slot still says passport
    msgs = chat.run("action_answer")
    if chat.followup == "situation_form" or cards(msgs):  # confidently one of them
        assert chat.slots["service"] in ids
    else:
        payloads = [b["payload"] for m in msgs for b in m.get("buttons") or []]
        assert {json.loads(p[len("/inform"):])["service"] for p in payloads[:-1]} == set(ids)
        assert chat.slots["aspect"] == "materials"


@pytest.mark.model
def test_not_this_one_with_the_right_name_goes_there(chat: Chat) -> None:
    chat.user("身份证丢了怎么补办", "ask_service", service="id-card-reissue")
    chat.run("action_answer")
    chat.user("不是这个，我问的是护照", "deny")
    msgs = chat.run("action_next_candidate")
    assert chat.slots["service"] == "passport"
    assert msgs[0]["text"] == "那您问的可能是「普通护照申请」：" or chat.followup == "situation_form"


@pytest.mark.model
@pytest.mark.parametrize("question", ["帮我写一首关于月亮的诗", "今天吃什么好", "股票怎么买"])
def test_unknown_questions_never_get_an_answer(chat: Chat, question: str) -> None:
    chat.user(question, "ask_service")
    msgs = chat.run("action_answer")
    assert not cards(msgs)
    handoff = [m["custom"]["handoff"] for m in msgs if (m.get("custom") or {}).get("handoff")]
    clarify = [m for m in msgs if m.get("buttons")]
    assert handoff or clarify
    if handoff:
        assert chat.paused and handoff[0]["reason"] in {"no_candidates", "low_confidence"}


@pytest.mark.model
def test_handoff_reasons_and_silence(chat: Chat) -> None:
    chat.user("我要投诉你们", "complain")
    chat.events.append({"event": "bot", "text": "非常抱歉……", "metadata": {}})  # utter_complain_ack came first
    (msg,) = chat.run("action_handoff")
    assert msg["custom"]["handoff"]["reason"] == "complaint"
    assert msg["text"].startswith("已为您转接人工客服")  # no second apology
    assert chat.paused and chat.slots["handed_off"] is True


@pytest.mark.model
def test_rating_is_recorded_for_the_last_answer(chat: Chat) -> None:
    chat.user("办护照多少钱", "ask_fee", service="passport")
    chat.run("action_answer")
    chat.user("不满意", "rate_answer")
    (msg,) = chat.run("action_rate")
    assert msg["custom"]["rating"] == {"value": "bad", "service": "passport", "aspect": "fee"}
    for said, value in (("👍 很有帮助", "good"), ("五星好评", "good"), ("一星", "bad"), ("没帮助", "bad")):
        chat.user(said, "rate_answer")
        assert chat.run("action_rate")[0]["custom"]["rating"]["value"] == value, said


# -- helpers, no model --------------------------------------------------------------------------------------------------
def _guide(gid: str) -> Any:
    from knowledge import BUNDLED_CORPUS, load_corpus

    corpus, _ = load_corpus(BUNDLED_CORPUS)
    return corpus.guides[gid]


@pytest.mark.parametrize(("said", "expected"), [
    ("1", "adult"), ("第二个", "minor"), ("minor", "minor"), ("我是本人", "adult"), ("监护人陪同", "minor"),
    ("不确定", "all"), ("今天天气不错", None), ("3", None),
])
def test_typed_situations_are_understood(said: str, expected: Optional[str]) -> None:
    from bot.actions.forms import match_situation

    assert match_situation(_guide("id-card-reissue"), said) == expected


@pytest.mark.parametrize(("said", "rest"), [("不是这个", ""), ("不是这个，我问的是落户", "落户"), ("不對，我想問的是護照", "护照")])
def test_denial_is_stripped(said: str, rest: str) -> None:
    from bot.actions.common import strip_deny

    assert strip_deny(said) == rest


def test_endpoints_and_credentials_stay_on_loopback() -> None:
    endpoints = yaml.safe_load((REPO / "bot" / "endpoints.yml").read_text(encoding="utf-8"))
    assert endpoints["action_endpoint"]["url"].startswith("http://127.0.0.1:")
    assert endpoints["tracker_store"]["type"] == "SQL"
    assert set(yaml.safe_load((REPO / "bot" / "credentials.yml").read_text(encoding="utf-8"))) == {"rest"}


def test_runner_writes_a_private_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOVBOT_RASA_TOKEN", raising=False)
    token = runner.auth_token(tmp_path)
    assert len(token) >= 24 and runner.auth_token(tmp_path) == token
    assert (tmp_path / "token").stat().st_mode & 0o077 == 0
    monkeypatch.setenv("GOVBOT_RASA_TOKEN", "from-env")
    assert runner.auth_token(tmp_path) == "from-env"


@pytest.mark.rasa
def test_rasa_launch_still_validates_action_answers() -> None:
    """bot/rasa_launch.py caches the response validator; valid answers pass, invalid ones still fail as in Rasa."""
    if not RASA_PYTHON.exists():
        pytest.skip(".venv-rasa is missing (make venvs)")
    code = """
import jsonschema
from bot.rasa_launch import patch_action_validation
from rasa.core.actions.action import RemoteAction
patch_action_validation()
a = RemoteAction("action_answer", None)
assert a._validate_action_result({"events": [{"event": "slot", "name": "service", "value": "passport"}],
                                  "responses": [{"text": "hi"}]})
for bad in ({"events": "not a list"}, {"events": [{"event": "slot"}]}, {"responses": ["text"]}):
    try:
        a._validate_action_result(bad)
    except jsonschema.ValidationError as e:
        assert "Failed to validate Action server response" in e.message
    else:
        raise SystemExit(f"accepted {bad}")
print("ok")
"""
    env = {**os.environ, **runner.QUIET_ENV, "PYTHONPATH": str(REPO)}
    done = subprocess.run([str(RASA_PYTHON), "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]
