"""action_handoff: a clerk takes over — structured case for the gateway, a notice for the citizen, then silence
(ConversationPaused) until the gateway hands the conversation back (ConversationResumed)."""

from __future__ import annotations

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher

from .answer import _known_confidence
from .common import (
    Candidate,
    get_kb,
    guide,
    handoff,
    in_thread,
    intent_of,
    last_bot_kind,
    previous_turn_metas,
    timed,
)

REASON_BY_INTENT = {
    "request_human": "requested",
    "complain": "complaint",
    "out_of_scope": "out_of_scope",
    "nlu_fallback": "low_confidence",
}


class ActionHandoff(Action):
    def name(self) -> str:
        return "action_handoff"

    @timed("action_handoff")
    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[EventType]:
        kb = await in_thread(get_kb)
        reason = REASON_BY_INTENT.get(intent_of(tracker) or "", "requested")
        if reason == "low_confidence" and last_bot_kind(tracker) == "clarify":
            reason = "still_unsure"
        service = tracker.get_slot("service")
        offered = next((m["candidates"] for m in previous_turn_metas(tracker) if m.get("candidates")), None)
        if offered:  # the buttons of a clarify just shown, with their confidence
            candidates = [Candidate(c["id"], c["title"], c.get("confidence")) for c in offered]
        else:
            candidates = [Candidate(c, guide(kb, c).name, _known_confidence(tracker, c))
                          for c in tracker.get_slot("candidates") or [] if guide(kb, c) is not None]
        confidence = _known_confidence(tracker, service) if service else None
        return handoff(dispatcher, tracker, reason, service=service, aspect=tracker.get_slot("aspect"),
                       candidates=candidates, confidence=confidence)
