"""End to end: the real Rasa server (trained model, .venv-rasa) and the real action server (.venv), conversations
through the REST channel `POST /webhooks/rest/webhook`, a temporary SQLite tracker store.

Every message the bot sends is checked to be extractive: a card rendered from the knowledge base (its lines equal
the guide's field), a response of the domain, or one of the action server's fixed phrases — never invented text.
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest
import yaml

from bot.runner import RASA_PYTHON, REPO, Stack, StackError, http_get, start_stack, train_model

pytestmark = [pytest.mark.rasa, pytest.mark.model]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, kb: Any, settings: Any) -> Iterator[Stack]:
    """Both servers; the action server answers from the index the `kb` fixture built of the bundled corpus."""
    if not RASA_PYTHON.exists():
        pytest.skip(".venv-rasa is missing (make venvs)")
    tmp = tmp_path_factory.mktemp("stack")
    try:
        model = train_model(lambda line: None)
    except StackError as exc:
        pytest.fail(f"no Rasa model: {exc}")
    with start_stack(tmp, model, extra_env={"GOVBOT_INDEX_DIR": str(settings.index_root)}) as running:
        yield running


@pytest.fixture(scope="module")
def corpus(kb: Any) -> Any:
    """The knowledge base the action server answers from (the index's own copy of the corpus)."""
    return kb.retriever.data.corpus


# -- what the bot may say -----------------------------------------------------------------------------------------------
def allowed_texts() -> list[re.Pattern[str]]:
    from bot.actions import common, forms

    domain = yaml.safe_load((REPO / "bot" / "domain.yml").read_text(encoding="utf-8"))
    fixed = [r["text"] for variants in domain["responses"].values() for r in variants if "text" in r]
    fixed += [common.CLARIFY_TEXT, common.CLARIFY_AGAIN_TEXT, forms.RETRY_TEXT, "感谢您的评价！",
              "感谢您的评价，我们会继续改进。"]
    fixed += [p + common.HANDOFF_TEXT for p in set(common.HANDOFF_PREFIX.values())]
    patterns = [re.compile(re.escape(t) + r"\Z") for t in fixed]
    patterns.append(re.compile(re.escape(forms.ASK_TEXT).replace(re.escape("{name}"), ".+") + r"\Z"))
    patterns.append(re.compile(re.escape(common.switch_preface("@@")).replace("@@", ".+") + r"\Z"))
    return patterns


def assert_extractive(replies: list[dict[str, Any]], corpus: Any) -> None:
    """Texts are card renderings (each followed by its card) or known phrases; card lines are the guide's field."""
    from knowledge.schema import ASPECTS
    from retrieval import render_card_text
    from retrieval.answers import field_items

    patterns = allowed_texts()
    for i, msg in enumerate(replies):
        card = (msg.get("custom") or {}).get("card")
        if card is not None:
            if card["source"]["guide"] in corpus.guides and card["aspect"] in ASPECTS:
                guide = corpus.guides[card["source"]["guide"]]
                situation = next((s.id for s in guide.situations if s.name == card["situation"]), None)
                assert card["items"] == field_items(guide, card["aspect"], situation), card
            else:  # a FAQ answer or a policy passage (possibly one chunk of it), quoted verbatim
                texts = [f.answer for f in corpus.faq] + [p.text for p in corpus.policies]
                assert all(any(item in t for t in texts) for item in card["items"]), card
            assert replies[i - 1].get("text") == render_card_text(card)
            assert card["source"]["title"] and card["source"]["updated"] and card["source"]["field"]
            continue
        if "text" in msg:
            following = replies[i + 1] if i + 1 < len(replies) else {}
            nxt = (following.get("custom") or {}).get("card")
            if nxt is not None and msg["text"] == render_card_text(nxt):
                continue
            assert any(p.match(msg["text"]) for p in patterns), f"text not from the knowledge base: {msg['text']!r}"


def cards(replies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m["custom"]["card"] for m in replies if (m.get("custom") or {}).get("card")]


def handoffs(replies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m["custom"]["handoff"] for m in replies if (m.get("custom") or {}).get("handoff")]


def situation_buttons(replies: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [b for m in replies for b in m.get("buttons") or [] if b["payload"].startswith('/inform{"situation"')]


def say(stack: Stack, corpus: Any, sender: str, text: str) -> list[dict[str, Any]]:
    replies = stack.say(sender, text)
    assert_extractive(replies, corpus)
    return replies


def materials_answer(stack: Stack, corpus: Any, sender: str, question: str,
                     situation: Optional[str] = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Ask for materials; if the bot asks for the 情形 (一次告知), click `situation` (default: the first)."""
    first = say(stack, corpus, sender, question)
    buttons = situation_buttons(first)
    if not buttons:
        return first, first
    chosen = next((b for b in buttons if situation and f'"{situation}"' in b["payload"]), buttons[0])
    return first, say(stack, corpus, sender, chosen["payload"])


# -- the conversations ------------------------------------------------------------------------------------------------------
def test_rasa_is_up_on_loopback_with_a_protected_api(stack: Stack) -> None:
    status, body = http_get(stack.rasa_url + "/")
    assert status == 200 and "Hello from Rasa" in body
    status, _ = http_get(f"{stack.rasa_url}/conversations/nobody/tracker")
    assert status in (401, 403)  # the HTTP API needs the token
    port = int(stack.rasa_url.rsplit(":", 1)[1])
    try:
        outside = socket.gethostbyname(socket.gethostname())
    except OSError:
        outside = None
    if outside and not outside.startswith("127."):
        with pytest.raises(OSError), socket.create_connection((outside, port), timeout=2):
            pass


def test_service_materials_fee_next_candidate_handoff_then_silence(stack: Stack, corpus: Any) -> None:
    sender = "citizen-main"
    asked, answer = materials_answer(stack, corpus, sender, "身份证丢了补办需要带什么材料", situation="adult")
    assert situation_buttons(asked), asked  # the guide has 情形: asked once, answered personalised
    (card,) = cards(answer)
    assert card["service"] == "id-card-reissue" and card["aspect"] == "materials"
    assert card["situation"] == "年满十六周岁本人办理"
    assert card["source"]["guide"] == "id-card-reissue" and "居民身份证法" in card["source"]["basis"]

    fee = cards(say(stack, corpus, sender, "那要多少钱"))
    assert [(c["service"], c["aspect"]) for c in fee] == [("id-card-reissue", "fee")]

    candidates = stack.tracker(sender)["slots"]["candidates"]
    assert candidates[0] == "id-card-reissue" and len(candidates) >= 2
    nxt = say(stack, corpus, sender, "不是这个")
    assert [(c["service"], c["aspect"]) for c in cards(nxt)] == [(candidates[1], "fee")]

    handed = say(stack, corpus, sender, "我要人工")
    (payload,) = handoffs(handed)
    assert payload["reason"] == "requested" and payload["service"] == candidates[1] and payload["aspect"] == "fee"
    assert {c["id"] for c in payload["candidates"]} >= {candidates[1]}
    assert all(set(c) == {"id", "title", "confidence"} for c in payload["candidates"])

    assert stack.say(sender, "你好，还在吗") == []  # silent until handed back
    assert stack.say(sender, "身份证丢了要带什么") == []
    tracker = stack.tracker(sender)
    assert tracker["paused"] and tracker["slots"]["handed_off"] is True

    # the gateway hands the conversation back: the bot answers again
    stack.hand_back(sender)
    again = say(stack, corpus, sender, "办护照多少钱")
    assert [(c["service"], c["aspect"]) for c in cards(again)] == [("passport", "fee")]


def test_traditional_characters_are_answered_like_simplified(stack: Stack, corpus: Any) -> None:
    def strip(replies: list[dict[str, Any]]) -> list[str]:
        return [json.dumps({k: v for k, v in m.items() if k != "recipient_id"}, ensure_ascii=False, sort_keys=True)
                for m in replies]

    simplified = materials_answer(stack, corpus, "simp", "护照要带什么材料", situation="adult")
    traditional = materials_answer(stack, corpus, "trad", "護照要帶什麼材料", situation="adult")
    assert strip(traditional[0]) == strip(simplified[0])
    assert strip(traditional[1]) == strip(simplified[1])
    assert cards(traditional[1]) and cards(traditional[1])[0]["service"] == "passport"
    assert strip(say(stack, corpus, "trad", "那要多少錢")) == strip(say(stack, corpus, "simp", "那要多少钱"))


@pytest.mark.parametrize("question", ["帮我写一首关于月亮的诗", "量子纠缠是什么原理", "明天北京会下雨吗"])
def test_unknown_questions_clarify_or_hand_off_and_never_answer(stack: Stack, corpus: Any, question: str) -> None:
    sender = f"unknown-{abs(hash(question))}"
    replies = say(stack, corpus, sender, question)
    assert not cards(replies), replies
    clarified = [m for m in replies if m.get("buttons")]
    handed = handoffs(replies)
    steered = [m for m in replies if m.get("text") and not m.get("buttons")]
    assert clarified or handed or steered, replies  # chitchat is steered back with a domain response
    if clarified:  # asked once; still unsure → a clerk, never a guess
        replies = say(stack, corpus, sender, "就是那个")
        assert not cards(replies)


def test_clarify_button_answers_and_not_this_one_walks_the_candidates(stack: Stack, corpus: Any) -> None:
    sender = "citizen-clarify"
    replies = say(stack, corpus, sender, "公积金怎么取")
    services = [b for m in replies for b in m.get("buttons") or [] if b["payload"].startswith('/inform{"service"')]
    if not services:  # the model was sure enough to answer directly: still a housing-fund card
        assert cards(replies) and cards(replies)[0]["service"].startswith("housing-fund")
        return
    picked = say(stack, corpus, sender, services[0]["payload"])
    chosen = json.loads(services[0]["payload"][len("/inform"):])["service"]
    assert situation_buttons(picked) or cards(picked)[0]["service"] == chosen


def test_an_ambiguous_mention_does_not_reuse_the_previous_service(stack: Stack, corpus: Any) -> None:
    sender = "citizen-ambiguous"
    assert [c["service"] for c in cards(say(stack, corpus, sender, "办护照多少钱"))] == ["passport"]
    replies = say(stack, corpus, sender, "身份证要带什么材料")
    assert all(c["service"] != "passport" for c in cards(replies)), replies
    offered = [json.loads(b["payload"][len("/inform"):])["service"] for m in replies for b in m.get("buttons") or []
               if b["payload"].startswith('/inform{"service"')]
    assert offered or situation_buttons(replies) or cards(replies), replies
    assert all(s.startswith("id-card") for s in offered), offered


def test_runner_starts_all_answers_and_stops_on_sigint(tmp_path: Path, stack: Stack, settings: Any) -> None:
    """`python -m bot.runner` (what `make run` calls): ready line, one REST turn, the gateway up, Ctrl-C stops
    all three cleanly."""
    import signal
    import subprocess
    import time

    from bot.runner import APP_PYTHON, QUIET_ENV, free_port, http_post_json

    model = train_model(lambda line: None)
    rasa_port, actions_port, gateway_port = free_port(), free_port(), free_port()
    env = {**os.environ, **QUIET_ENV, "PYTHONPATH": str(REPO), "GOVBOT_RASA_TOKEN": "test-token",
           "GOVBOT_INDEX_DIR": str(settings.index_root)}
    proc = subprocess.Popen([str(APP_PYTHON), "-m", "bot.runner", "--model", str(model), "--rasa-port",
                             str(rasa_port), "--actions-port", str(actions_port), "--gateway-port", str(gateway_port), "--var", str(tmp_path)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 600
        for line in proc.stdout:
            lines.append(line.rstrip())
            if line.startswith("govbot is ready: ") or time.monotonic() > deadline:
                break
        assert lines[-1] == f"govbot is ready: http://127.0.0.1:{rasa_port}/webhooks/rest/webhook", lines[-20:]
        assert all(line.startswith(("[runner]", "[rasa]", "[actions]", "[gateway]", "[train]", "govbot is ready"))
                   for line in lines)
        status, body = http_post_json(f"http://127.0.0.1:{rasa_port}/webhooks/rest/webhook",
                                      {"sender": "runner-test", "message": "办护照多少钱"})
        assert status == 200 and isinstance(body, list) and cards(body)
        assert (tmp_path / "tracker.db").exists() and (tmp_path / "endpoints.yml").exists()
        status, body = http_post_json(f"http://127.0.0.1:{gateway_port}/api/ask", {"question": "办护照多少钱"})
        assert status == 200 and isinstance(body, dict), body
        assert body["decision"] == "answer" and body["cards"][0]["service"] == "passport"
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, rest[-2000:]
    assert "[runner] rasa stopped (exit 0)" in rest and "[runner] actions stopped (exit 0)" in rest
    assert "[runner] gateway stopped (exit 0)" in rest
    for port in (rasa_port, actions_port, gateway_port):
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
