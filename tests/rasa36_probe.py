"""Run inside .venv-rasa (Python 3.10, Rasa 3.6): call a live action server exactly as `rasa run` does.

    .venv-rasa/bin/python tests/rasa36_probe.py --url http://127.0.0.1:PORT/webhook --domain bot/domain.yml

It uses Rasa's own client code — `RemoteAction._action_call_format` builds the request, `RemoteAction.run` posts
it, validates the answer against Rasa's response schema, turns `responses` into BotUttered events and
deserialises `events` — and applies the events to a DialogueStateTracker the way the processor does. It prints one
JSON document: the first request body as sent, and per step the events and the messages the channel received.
Used by tests/test_actions.py to prove that rasa-sdk 3.21.1 (Python 3.11) speaks Rasa 3.6's action protocol.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from rasa.core.actions.action import RemoteAction  # noqa: E402
from rasa.core.channels.channel import CollectingOutputChannel  # noqa: E402
from rasa.core.nlg import TemplatedNaturalLanguageGenerator  # noqa: E402
from rasa.shared.core.domain import Domain  # noqa: E402
from rasa.shared.core.events import (  # noqa: E402
    ActionExecuted,
    BotUttered,
    SessionStarted,
    SlotSet,
    UserUttered,
)
from rasa.shared.core.trackers import DialogueStateTracker  # noqa: E402
from rasa.utils.endpoints import EndpointConfig  # noqa: E402

# (sender, [step]); a step is ("user", text, intent, entities) or ("action", name)
SCENARIOS: dict[str, list[tuple[Any, ...]]] = {
    "materials": [
        ("user", "身份證丟了要帶什麼", "ask_materials", [{"entity": "service", "value": "id-card-reissue"}]),
        ("action", "action_answer"),
        ("action", "action_ask_situation"),
        ("user", '/inform{"situation":"adult"}', "inform", [{"entity": "situation", "value": "adult"}]),
        ("action", "validate_situation_form"),
        ("action", "action_answer"),
        ("user", "那要多少钱", "ask_fee", []),
        ("action", "action_answer"),
    ],
    "next": [
        ("user", "身份证丢了补办多少钱", "ask_fee", [{"entity": "service", "value": "id-card-reissue"}]),
        ("action", "action_answer"),
        ("user", "不是这个", "deny", []),
        ("action", "action_next_candidate"),
    ],
    "clarify": [
        ("user", "身份证", "nlu_fallback", []),
        ("action", "action_clarify"),
        ("user", "就是那个呀", "nlu_fallback", []),
        ("action", "action_clarify"),
    ],
    "handoff": [
        ("user", "我要人工", "request_human", []),
        ("action", "action_handoff"),
        ("user", "在吗", "greet", []),
    ],
}


def user_event(text: str, intent: str, entities: list[dict[str, Any]]) -> UserUttered:
    ents = [{"start": 0, "end": 0, "extractor": "probe", **e} for e in entities]
    return UserUttered(text, intent={"name": intent, "confidence": 0.99}, entities=ents,
                       parse_data={"text": text, "intent": {"name": intent, "confidence": 0.99}, "entities": ents,
                                   "intent_ranking": [{"name": intent, "confidence": 0.99}]})


async def run(url: str, domain: Domain) -> dict[str, Any]:
    endpoint = EndpointConfig(url)
    nlg = TemplatedNaturalLanguageGenerator(domain.responses)
    out: dict[str, Any] = {"rasa_version": None, "first_request": None, "scenarios": {}}
    import rasa

    out["rasa_version"] = rasa.__version__
    for sender, steps in SCENARIOS.items():
        tracker = DialogueStateTracker.from_events(sender, [ActionExecuted("action_session_start"),
                                                            SessionStarted(), ActionExecuted("action_listen")],
                                                   slots=domain.slots)
        log: list[dict[str, Any]] = []
        for step in steps:
            if step[0] == "user":
                _, text, intent, entities = step
                if tracker.is_paused():
                    log.append({"user": text, "ignored_because_paused": True})
                    continue
                tracker.update(user_event(text, intent, entities))
                for e in entities:  # what the from_entity slot mappings do before the policies run
                    if e["entity"] in {slot.name for slot in domain.slots}:
                        tracker.update(SlotSet(e["entity"], e["value"]))
                continue
            name = step[1]
            if tracker.is_paused():
                log.append({"action": name, "skipped_because_paused": True})
                continue
            action = RemoteAction(name, endpoint)
            if out["first_request"] is None:
                out["first_request"] = action._action_call_format(tracker, domain)
            channel = CollectingOutputChannel()
            events = await action.run(channel, nlg, tracker, domain)
            tracker.update(ActionExecuted(name))
            for event in events:
                tracker.update(event)
            log.append({
                "action": name,
                "events": [e.as_dict() for e in events],
                "bot": [e.as_dict() for e in events if isinstance(e, BotUttered)],
                "paused": tracker.is_paused(),
                "slots": {k: v for k, v in tracker.current_slot_values().items() if v is not None},
                "active_loop": (tracker.active_loop or {}).get("name"),
            })
        out["scenarios"][sender] = log
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--domain", required=True)
    args = parser.parse_args()
    domain = Domain.load(args.domain)
    result = asyncio.run(run(args.url, domain))
    sys.stdout.write("PROBE-RESULT " + json.dumps(result, ensure_ascii=False, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
