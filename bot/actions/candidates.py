"""action_next_candidate: 「不是这个」 — the next candidate service, keeping what was being asked."""

from __future__ import annotations

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher

from .answer import _dedupe, _known_confidence, answer_service, search_and_answer
from .clarify import unsure
from .common import (
    aspect_of,
    entity_values,
    get_kb,
    guide,
    in_thread,
    mentioned_services,
    previous_question,
    strip_deny,
    switch_preface,
    timed,
    user_text,
)


class ActionNextCandidate(Action):
    def name(self) -> str:
        return "action_next_candidate"

    @timed("action_next_candidate")
    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[EventType]:
        kb = await in_thread(get_kb)
        current = tracker.get_slot("service")
        aspect = aspect_of(tracker)
        region = tracker.get_slot("region")
        remaining = [c for c in (tracker.get_slot("candidates") or []) if c != current and guide(kb, c) is not None]
        text = user_text(tracker)
        rest = strip_deny(text) if text else ""

        def switch(service: str, candidates: list[str]) -> list[EventType]:
            return answer_service(dispatcher, tracker, kb, service, aspect, candidates=candidates,
                                  confidence=_known_confidence(tracker, service, kb),
                                  preface=switch_preface(guide(kb, service).name))

        # 「不是这个，我问的是落户」: the citizen says what it is instead
        named = [s for s in entity_values(tracker, "service") if s != current and guide(kb, s) is not None]
        if named:
            return switch(named[0], _dedupe([*named, *remaining]))
        if len(rest) >= 2:
            mentioned = [s for s in mentioned_services(kb, rest) if s != current]
            if mentioned:
                return switch(mentioned[0], _dedupe([*mentioned, *remaining]))
            hits = await in_thread(kb.search, rest, region=region, k=5)
            exclude = (current,) if current else ()
            others = [h for h in hits if (h.service if h.kind != "guide" else h.doc_id) not in exclude]
            if (others and kb.retriever.is_confident(others[0])) or not remaining:
                return search_and_answer(dispatcher, tracker, kb, hits, aspect, exclude=exclude, announce=True)

        # plain 「不是这个」: the next candidate of the last search
        if remaining:
            return switch(remaining[0], remaining)
        question = previous_question(tracker)
        if not current and not question:
            dispatcher.utter_message(response="utter_ask_rephrase")
            return []
        hits = await in_thread(kb.search, question, region=region, k=5) if question else []
        return unsure(dispatcher, tracker, kb, hits, aspect=aspect, exclude=(current,) if current else ())
