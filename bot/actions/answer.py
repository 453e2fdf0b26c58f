"""action_answer: retrieval + confidence gate → the asked field of the guide, as text plus a `custom` card.

Where the service comes from, in order:
1. a `service` entity in this message (linked by the NLU, or a clarify button `/inform{"service": id}`);
2. the conversation (`service` slot) for follow-ups such as 「那要多少钱」 — unless the message names another
   guide verbatim, or it is a new question (ask_service);
3. a search with the message text, answered only when the top hit passes the confidence gate; otherwise clarify
   (buttons of the plausible guides) or, when there are none or we already asked, hand off.
"""

from __future__ import annotations

from typing import Any, Optional

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, FollowupAction, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from .clarify import among, unsure
from .common import (
    ALL_SITUATIONS,
    FORM,
    GUIDE_ASPECTS,
    NEW_QUESTION_INTENTS,
    aspect_of,
    candidates_from_hits,
    entity_values,
    get_kb,
    guide,
    in_thread,
    intent_of,
    last_bot_kind,
    last_meta_for,
    last_question,
    latest_meta,
    logger,
    mentioned_services,
    nlu_candidates,
    situation_for,
    stop_form,
    switch_preface,
    timed,
    user_text,
    utter_cards,
)


def _dedupe(ids: list[str]) -> list[str]:
    return list(dict.fromkeys(i for i in ids if i))


def answer_service(dispatcher: CollectingDispatcher, tracker: Tracker, kb: Any, service: str,
                   aspect: Optional[str], *, candidates: list[str], confidence: Optional[float],
                   preface: Optional[str] = None) -> list[EventType]:
    """Answer `aspect` of one guide; for materials of a guide with 情形, first ask which one applies."""
    g = guide(kb, service)
    if g is None:  # not a guide of this knowledge base (stale slot, unknown id): never guess
        return unsure(dispatcher, tracker, kb, [], aspect=aspect)
    situation = situation_for(tracker, service)
    events: list[EventType] = [*stop_form(tracker), SlotSet("service", service),
                               SlotSet("candidates", _dedupe([service, *candidates]))]
    if aspect:
        events.append(SlotSet("aspect", aspect))
    if situation is None and tracker.get_slot("situation") is not None:
        events.append(SlotSet("situation", None))
    if preface:
        dispatcher.utter_message(text=preface)
    if aspect == "materials" and g.situations and situation is None:
        # 一次告知: ask the 情形 first (situation_form → action_ask_situation), then answer once, personalised
        return [*events, FollowupAction(FORM)]
    from retrieval import guide_card

    aspects = [aspect] if aspect in GUIDE_ASPECTS else ["materials", "procedure"]
    chosen = None if situation in (None, ALL_SITUATIONS) else situation
    cards = [guide_card(g, a, chosen if a == "materials" else None, confidence) for a in aspects]
    utter_cards(dispatcher, cards, {"service": service, "aspect": aspect, "confidence": confidence})
    return events


def answer_hit(dispatcher: CollectingDispatcher, tracker: Tracker, kb: Any, hit: Any, aspect: Optional[str],
               candidates: list[str]) -> list[EventType]:
    """A FAQ answer or a policy passage, quoted as it stands in the knowledge base."""
    cards = kb.cards(hit, aspect if aspect in GUIDE_ASPECTS else None)
    service = hit.service if hit.kind != "guide" else hit.doc_id
    utter_cards(dispatcher, cards, {"service": service, "aspect": aspect, "confidence": hit.confidence,
                                    "doc": hit.doc_id})
    events: list[EventType] = [*stop_form(tracker), SlotSet("candidates", candidates)]
    if service and guide(kb, service) is not None:
        events.append(SlotSet("service", service))
    if aspect:
        events.append(SlotSet("aspect", aspect))
    return events


def search_and_answer(dispatcher: CollectingDispatcher, tracker: Tracker, kb: Any, hits: list[Any],
                      aspect: Optional[str], exclude: tuple[str, ...] = (),
                      announce: bool = False) -> list[EventType]:
    """Answer from the search results if the best one passes the confidence gate; otherwise clarify/hand off.
    `announce`: say which service we switched to (after 「不是这个」)."""
    hits = [h for h in hits if (h.service if h.kind != "guide" else h.doc_id) not in exclude]
    if not hits or not kb.retriever.is_confident(hits[0]):
        return unsure(dispatcher, tracker, kb, hits, aspect=aspect, exclude=exclude)
    top = hits[0]
    candidates = [c.id for c in candidates_from_hits(kb, hits, exclude)]
    if aspect == "policy":
        policy = next((h for h in hits if h.kind == "policy"), None)
        if policy is not None and kb.retriever.is_confident(policy):
            return answer_hit(dispatcher, tracker, kb, policy, aspect, candidates)
    if top.kind == "guide" and not (top.field == "faq" and top.ref and aspect is None):
        return answer_service(dispatcher, tracker, kb, top.doc_id, aspect if aspect != "policy" else None,
                              candidates=candidates, confidence=top.confidence,
                              preface=switch_preface(top.title) if announce else None)
    return answer_hit(dispatcher, tracker, kb, top, aspect, candidates)


class ActionAnswer(Action):
    def name(self) -> str:
        return "action_answer"

    @timed("action_answer")
    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[EventType]:
        kb = await in_thread(get_kb)
        text = user_text(tracker)
        intent = intent_of(tracker)
        aspect = aspect_of(tracker)
        region = tracker.get_slot("region")
        slot_service = tracker.get_slot("service")
        known = list(tracker.get_slot("candidates") or [])
        named = [s for s in entity_values(tracker, "service") if guide(kb, s) is not None]
        unknown = [s for s in entity_values(tracker, "service") if guide(kb, s) is None]
        if unknown:
            logger.warning("the NLU linked %s, which the knowledge index does not have (stale index?)", unknown)
        logger.debug("answer sender=%s intent=%s aspect=%s named=%s slot=%s", tracker.sender_id, intent, aspect,
                     named, slot_service)

        if named:  # the citizen (or a button) named the service
            service = named[0]
            confidence = None if text else await in_thread(_known_confidence, tracker, service, kb)
            candidates = _dedupe([*named, *known])
            if text:
                hits = await in_thread(kb.search, text, region=region, k=5)
                found = [c for c in candidates_from_hits(kb, hits) if c.id == service]
                confidence = found[0].confidence if found else confidence
                candidates = _dedupe([*named, *(c.id for c in candidates_from_hits(kb, hits))])
            return answer_service(dispatcher, tracker, kb, service, aspect, candidates=candidates,
                                  confidence=confidence)

        ambiguous = nlu_candidates(kb, tracker)
        if ambiguous and slot_service not in ambiguous and text:  # 「身份证要带什么」: which of the four?
            hits = await in_thread(kb.search, text, region=region, k=5)
            options = among(kb, ambiguous, hits)
            top = hits[0] if hits else None
            if top is not None and kb.retriever.is_confident(top) and options and options[0].id == (
                    top.service if top.kind != "guide" else top.doc_id):
                return answer_service(dispatcher, tracker, kb, options[0].id, aspect,
                                      candidates=[c.id for c in options], confidence=top.confidence)
            return unsure(dispatcher, tracker, kb, hits, aspect=aspect, options=options)

        if form_just_answered(tracker):  # the situation form completed: the personalised checklist, whatever the
            aspect = "materials"        # intent of the typed answer (「我是本人办理」 may look like ask_service)
            intent = "inform"
        if slot_service and intent not in NEW_QUESTION_INTENTS and aspect != "policy":  # a follow-up in context
            mentioned = mentioned_services(kb, text) if text else []
            if mentioned and slot_service not in mentioned:  # names another guide verbatim: switch to it
                hits = await in_thread(kb.search, text, region=region, k=5)
                found = [c for c in candidates_from_hits(kb, hits) if c.id == mentioned[0]]
                return answer_service(dispatcher, tracker, kb, mentioned[0], aspect,
                                      candidates=_dedupe([*mentioned, *(c.id for c in candidates_from_hits(kb, hits))]),
                                      confidence=found[0].confidence if found else None)
            return answer_service(dispatcher, tracker, kb, str(slot_service), aspect, candidates=known,
                                  confidence=await in_thread(_known_confidence, tracker, str(slot_service), kb))

        if text is None:  # a payload without a service and nothing in context
            dispatcher.utter_message(response="utter_ask_rephrase")
            return []
        hits = await in_thread(kb.search, text, region=region, k=5)
        return search_and_answer(dispatcher, tracker, kb, hits, aspect)


def form_just_answered(tracker: Tracker) -> bool:
    """The bot asked for the 情形 last turn and the form filled `situation` in this one."""
    if not tracker.get_slot("situation") or last_bot_kind(tracker) != "ask_situation":
        return False
    for event in reversed(tracker.events or []):
        if event.get("event") == "user":
            return False
        if event.get("event") == "slot" and event.get("name") == "situation" and event.get("value"):
            return True
    return False


def _known_confidence(tracker: Tracker, service: str, kb: Any = None) -> Optional[float]:
    """The confidence this service had when it was found: from the metadata of an earlier answer or clarify
    button, else (the answer waited for the situation form) by searching the question that led here again."""
    info = last_meta_for(tracker, service)
    if info and info.get("confidence") is not None:
        return float(info["confidence"])
    asked = latest_meta(tracker, lambda m: any(c.get("id") == service for c in m.get("candidates") or []))
    if asked:
        c = next(c for c in asked["candidates"] if c.get("id") == service)
        return c.get("confidence")
    question = last_question(tracker)
    if kb is not None and question:
        hits = kb.search(question, k=5)
        found = [c for c in candidates_from_hits(kb, hits) if c.id == service]
        return found[0].confidence if found else None
    return None
