"""Unsure → ask which service is meant, with buttons of the top candidates; unsure twice → a clerk."""

from __future__ import annotations

import os
from typing import Any, Optional

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from .common import (
    CLARIFY_AGAIN_TEXT,
    CLARIFY_TEXT,
    Candidate,
    aspect_of,
    candidates_from_hits,
    get_kb,
    guide,
    handoff,
    in_thread,
    last_bot_kind,
    nlu_candidates,
    previous_turn_metas,
    stop_form,
    timed,
    user_text,
)

MAX_OPTIONS = 3  # buttons from a search
MAX_NAMED_OPTIONS = 5  # buttons when the NLU says which guides a mention may mean (「身份证」: four)


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


def plausible(kb: Any, hit: Any) -> bool:
    """Worth a clarify button: the question shares words with the guide (BM25 > 0), or is semantically very close,
    or the calibrated confidence is not negligible.

    Measured on this corpus (e5-small): off-topic questions (天气, 写诗, 投诉) reach dense ≤ 0.90 with no lexical
    overlap; vague on-topic ones (身份证, 户口, 房子) reach ≥ 0.90 or share words with several guides."""
    return (hit.scores.get("lexical", 0.0) > 0
            or hit.scores.get("dense", 0.0) >= _env_float("GOVBOT_CLARIFY_MIN_DENSE", 0.93)
            or hit.confidence >= _env_float("GOVBOT_CLARIFY_MIN_CONFIDENCE", kb.retriever.threshold / 4))


def among(kb: Any, ids: list[str], hits: list[Any], exclude: tuple[str, ...] = ()) -> list[Candidate]:
    """The guides `ids` (the NLU's `service_candidates`), in the order of the search hits, then the rest."""
    ranked = [c for c in candidates_from_hits(kb, hits, exclude) if c.id in ids]
    rest = [Candidate(i, guide(kb, i).name, None) for i in ids
            if i not in {c.id for c in ranked} and i not in exclude and guide(kb, i) is not None]
    return ranked + rest


def unsure(dispatcher: CollectingDispatcher, tracker: Tracker, kb: Any, hits: list[Any], *,
           aspect: Optional[str], exclude: tuple[str, ...] = (), reason: str = "low_confidence",
           options: Optional[list[Candidate]] = None) -> list[EventType]:
    """Clarify with the plausible guides among `hits` (or the given `options`); hand off if there are none or we
    already asked."""
    if options is None:
        options = candidates_from_hits(kb, [h for h in hits if plausible(kb, h)], exclude)[:MAX_OPTIONS]
    options = options[:MAX_NAMED_OPTIONS]
    top = hits[0].confidence if hits else None
    if last_bot_kind(tracker) == "clarify":  # asked already: the clerk sees what was offered, then what is new
        offered = next((m.get("candidates") or [] for m in previous_turn_metas(tracker) if m.get("kind") == "clarify"),
                       [])
        shown = [Candidate(c["id"], c["title"], c.get("confidence")) for c in offered]
        merged = shown + [c for c in options if c.id not in {s.id for s in shown}]
        return handoff(dispatcher, tracker, "still_unsure", aspect=aspect, candidates=merged, confidence=top)
    if not options:
        return handoff(dispatcher, tracker, "no_candidates" if reason == "low_confidence" else reason,
                       aspect=aspect, candidates=candidates_from_hits(kb, hits[:MAX_OPTIONS], exclude),
                       confidence=top)
    text = CLARIFY_TEXT if len(options) > 1 else CLARIFY_AGAIN_TEXT
    from .common import utter_clarify

    utter_clarify(dispatcher, options, {"aspect": aspect, "confidence": top}, text=text)
    events: list[EventType] = [*stop_form(tracker), SlotSet("candidates", [c.id for c in options])]
    if aspect:
        events.append(SlotSet("aspect", aspect))
    return events


class ActionClarify(Action):
    """`nlu_fallback` (and any unsure moment): offer the top candidate services as buttons."""

    def name(self) -> str:
        return "action_clarify"

    @timed("action_clarify")
    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[EventType]:
        kb = await in_thread(get_kb)
        text = user_text(tracker)
        if text is None:
            dispatcher.utter_message(response="utter_ask_rephrase")
            return []
        aspect = aspect_of(tracker)
        hits = await in_thread(kb.search, text, region=tracker.get_slot("region"), k=5)
        named = nlu_candidates(kb, tracker)
        return unsure(dispatcher, tracker, kb, hits, aspect=aspect,
                      options=among(kb, named, hits) if named else None)
