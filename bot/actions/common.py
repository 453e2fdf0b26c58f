"""What every action shares: the knowledge service (loaded once per process), reading the tracker, and the
three kinds of output (answer cards, clarify buttons, hand-off).

Every text shown to a citizen is either rendered from a knowledge-base card (`render_card_text`) or one of the
fixed system phrases below (questions, notices); nothing else is ever said.

State the actions keep between turns lives in slots (`service`, `aspect`, `situation`, `candidates`,
`handed_off`) and in the metadata of the bot messages they send (`govbot`: kind, service, aspect, candidates with
their confidence). Rasa stores that metadata with the BotUttered event and sends it back in the tracker; channels
never see it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Optional, TypeVar

from rasa_sdk import Tracker
from rasa_sdk.events import ActiveLoop, ConversationPaused, EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

logger = logging.getLogger("govbot.actions")
T = TypeVar("T")

# -- the knowledge service, once per process ----------------------------------------------------------------------
_kb: Any = None
_kb_lock = threading.Lock()
# Searches are CPU-bound (torch, numpy) and release the GIL for most of their time: run them off the event loop so
# /health answers while a search runs, but no more at once than there are cores.
_pool = ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1)), thread_name_prefix="kb")


def get_kb() -> Any:
    """The process-wide `retrieval.KnowledgeService`, with its index loaded (takes seconds the first time)."""
    global _kb
    if _kb is None:
        with _kb_lock:
            if _kb is None:
                from retrieval import KnowledgeService

                started = time.perf_counter()
                kb = KnowledgeService()
                _ = kb.retriever  # load the index now, not in the first conversation
                logger.info("knowledge service loaded in %.1f s (%d guides)", time.perf_counter() - started,
                            len(guides_of(kb)))
                _kb = kb
    return _kb


def set_kb(kb: Any) -> None:
    """Use this knowledge service (tests, benchmarks)."""
    global _kb
    _kb = kb


def warm_up() -> None:
    """Load the index and run one search so the first citizen does not pay for lazy initialisation; warn when the
    index was built from another version of the knowledge base than the one in the checkout."""
    kb = get_kb()
    try:
        from knowledge import load_corpus

        current, _ = load_corpus(kb.settings.corpus_dir)
        indexed = kb.retriever.data.corpus
        if indexed is not None and current.content_hash() != indexed.content_hash():
            logger.warning("the knowledge index %s was built from another version of %s (%d guides indexed, %d "
                           "there): answers come from the index; run `make index` to rebuild it",
                           kb.retriever.data.folder, kb.settings.corpus_dir, len(indexed.guides), len(current.guides))
    except Exception as exc:  # a check only: never keep the server from starting
        logger.warning("could not compare the index with the knowledge base: %s", exc)
    started = time.perf_counter()
    kb.search("身份证丢了怎么补办", k=3)
    logger.info("warm-up search %.0f ms", (time.perf_counter() - started) * 1000)


async def in_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_pool, lambda: fn(*args, **kwargs))


def guides_of(kb: Any) -> dict[str, Any]:
    corpus = kb.retriever.data.corpus
    return dict(corpus.guides) if corpus is not None else {}


def guide(kb: Any, service: Optional[str]) -> Any:
    if not service:
        return None
    corpus = kb.retriever.data.corpus
    return corpus.guides.get(service) if corpus is not None else None


# -- reading the tracker -------------------------------------------------------------------------------------------
ASPECT_BY_INTENT = {
    "ask_materials": "materials",
    "ask_procedure": "procedure",
    "ask_fee": "fee",
    "ask_time_limit": "time_limit",
    "ask_location": "location",
    "ask_conditions": "conditions",
    "ask_online": "online",
    "ask_basis": "basis",
    "ask_policy": "policy",
}
GUIDE_ASPECTS = ("materials", "procedure", "fee", "time_limit", "location", "conditions", "online", "basis",
                 "overview")
ALL_SITUATIONS = "all"  # the situation-form answer "不确定": every material, each marked where it applies
FORM = "situation_form"


def intent_of(tracker: Tracker) -> Optional[str]:
    intent = (tracker.latest_message or {}).get("intent") or {}
    name = intent.get("name")
    return str(name) if name else None


def user_text(tracker: Tracker) -> Optional[str]:
    """The citizen's words, or None when the message was a button payload (`/inform{...}`)."""
    text = ((tracker.latest_message or {}).get("text") or "").strip()
    if not text or text.startswith("/"):
        return None
    return text


def entity_values(tracker: Tracker, entity: str) -> list[str]:
    out: list[str] = []
    for e in (tracker.latest_message or {}).get("entities") or []:
        if e.get("entity") == entity and e.get("value") not in (None, "") and str(e["value"]) not in out:
            out.append(str(e["value"]))
    return out


NEW_QUESTION_INTENTS = ("ask_service", "nlu_fallback", "out_of_scope")


def nlu_candidates(kb: Any, tracker: Tracker) -> list[str]:
    """Guides an ambiguous mention may mean (「身份证」), as the NLU's ServiceLinker put them in the parse data."""
    ids = (tracker.latest_message or {}).get("service_candidates") or []
    return [str(i) for i in dict.fromkeys(ids) if guide(kb, str(i)) is not None]


def aspect_of(tracker: Tracker) -> Optional[str]:
    """The aspect asked now: from the intent, else a cue in the wording, else the one being talked about
    (not carried over into a new question about a service)."""
    intent = intent_of(tracker)
    if intent in ASPECT_BY_INTENT:
        return ASPECT_BY_INTENT[intent]
    text = user_text(tracker)
    if text:
        from nlu import detect_aspect

        cue = detect_aspect(text)
        if cue:
            return cue
    if intent in NEW_QUESTION_INTENTS:
        return None
    slot = tracker.get_slot("aspect")
    return str(slot) if slot else None


def previous_turn_metas(tracker: Tracker) -> list[dict[str, Any]]:
    """The `govbot` metadata of the bot messages of the previous turn (between the last two user messages),
    latest first."""
    events = list(tracker.events or [])
    last_user = max((i for i, e in enumerate(events) if e.get("event") == "user"), default=len(events))
    out: list[dict[str, Any]] = []
    for event in reversed(events[:last_user]):
        if event.get("event") == "user":
            break
        if event.get("event") == "bot":
            info = (event.get("metadata") or {}).get("govbot")
            if info:
                out.append(dict(info))
    return out


def spoke_this_turn(tracker: Tracker) -> bool:
    """Did the bot already say something since the citizen's latest message (e.g. utter_out_of_scope)?"""
    for event in reversed(tracker.events or []):
        if event.get("event") == "user":
            return False
        if event.get("event") == "bot":
            return True
    return False


def last_bot_kind(tracker: Tracker) -> Optional[str]:
    """What the bot did in the previous turn: answer | clarify | ask_situation | handoff | rate | None."""
    metas = previous_turn_metas(tracker)
    return metas[0].get("kind") if metas else None


def latest_meta(tracker: Tracker, predicate: Callable[[dict[str, Any]], bool]) -> Optional[dict[str, Any]]:
    """The latest bot metadata (any turn) that satisfies `predicate`."""
    for event in reversed(tracker.events or []):
        if event.get("event") == "bot":
            info = (event.get("metadata") or {}).get("govbot")
            if info and predicate(info):
                return dict(info)
    return None


def last_meta_for(tracker: Tracker, service: Optional[str]) -> Optional[dict[str, Any]]:
    """The latest metadata that spoke about `service` — to carry its confidence forward."""
    return latest_meta(tracker, lambda m: service is not None and m.get("service") == service)


def situation_for(tracker: Tracker, service: Optional[str]) -> Optional[str]:
    """The `situation` slot, if it was chosen for this service (it is stale once the service changed)."""
    value = tracker.get_slot("situation")
    if not value or not service:
        return None
    asked = latest_meta(tracker, lambda m: m.get("kind") == "ask_situation")
    return str(value) if asked and asked.get("service") == service else None


def last_question(tracker: Tracker, skip_current: bool = False) -> Optional[str]:
    """The citizen's latest typed message (button payloads skipped), optionally before the current one."""
    events = [e for e in (tracker.events or []) if e.get("event") == "user"]
    for e in reversed(events[:-1] if skip_current else events):
        text = (e.get("text") or "").strip()
        if text and not text.startswith("/"):
            return text
    return None


def previous_question(tracker: Tracker) -> Optional[str]:
    """The citizen's last typed message before the current one (for 「不是这个」 without candidates)."""
    return last_question(tracker, skip_current=True)


# -- matching words against the knowledge base ----------------------------------------------------------------------
def mentioned_services(kb: Any, text: str) -> list[str]:
    """Guides whose name or an alias appears verbatim in the text (longest mention first)."""
    from nlu import normalize

    norm = normalize(text)
    found: list[tuple[int, str]] = []
    for gid, g in guides_of(kb).items():
        best = 0
        for phrase in (g.name, *g.aliases):
            p = normalize(phrase)
            if len(p) >= 2 and p in norm:
                best = max(best, len(p))
        if best:
            found.append((best, gid))
    return [gid for _, gid in sorted(found, key=lambda x: -x[0])]


_DENY = re.compile(r"(不是这个|不是这样|不是的|不是|不对|错了|搞错了|弄错了|我问的是|我要问的是|我说的是|我想问的是|我想问|我要办的是|我想办的是|我要办|我想办|是|问|的|呢|吧|啊|呀|哦|嗯|[，,。.!！?？\s~～…])")


def strip_deny(text: str) -> str:
    """What is left of 「不是这个，我问的是落户」 once the denial is removed ('落户')."""
    from nlu import normalize

    return _DENY.sub("", normalize(text))


# -- output ---------------------------------------------------------------------------------------------------------
@dataclass
class Candidate:
    id: str
    title: str
    confidence: Optional[float]

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title,
                "confidence": None if self.confidence is None else round(float(self.confidence), 4)}


def candidates_from_hits(kb: Any, hits: Iterable[Any], exclude: Iterable[str] = ()) -> list[Candidate]:
    """Distinct guides among the hits, best first (a FAQ linked to a guide counts for the guide)."""
    skip = set(exclude)
    out: list[Candidate] = []
    seen: set[str] = set()
    for h in hits:
        sid = h.service if h.kind != "guide" else h.doc_id
        if not sid or sid in seen or sid in skip:
            continue
        g = guide(kb, sid)
        if g is None:
            continue
        seen.add(sid)
        out.append(Candidate(sid, g.name, h.confidence))
    return out


def meta(kind: str, **fields: Any) -> dict[str, Any]:
    return {"govbot": {"kind": kind, **fields}}


def utter_cards(dispatcher: CollectingDispatcher, cards: list[dict[str, Any]], info: dict[str, Any]) -> None:
    from retrieval import render_card_text

    for card in cards:
        dispatcher.utter_message(text=render_card_text(card), json_message={"card": _plain(card)},
                                 **meta("answer", **info))


def _plain(value: Any) -> Any:
    """JSON-safe copy (numpy floats and tuples become plain numbers and lists)."""
    return json.loads(json.dumps(value, ensure_ascii=False, default=float))


def switch_preface(name: str) -> str:
    """Said before the answer for another service (「不是这个」)."""
    return f"那您问的可能是「{name}」："


CLARIFY_TEXT = "我不太确定您想办理的是哪一项，请选择："
CLARIFY_AGAIN_TEXT = "您是想办理下面哪一项？请选择："
NONE_OF_THESE = {"title": "都不是，转人工", "payload": "/request_human"}


def utter_clarify(dispatcher: CollectingDispatcher, options: list[Candidate], info: dict[str, Any],
                  text: str = CLARIFY_TEXT) -> None:
    buttons = [{"title": c.title, "payload": "/inform" + json.dumps({"service": c.id}, ensure_ascii=False)}
               for c in options]
    dispatcher.utter_message(text=text, buttons=[*buttons, NONE_OF_THESE],
                             **meta("clarify", candidates=[c.as_dict() for c in options], **info))


HANDOFF_PREFIX = {  # said only when no response of the dialogue core (utter_out_of_scope, …) came just before
    "requested": "好的，",
    "complaint": "",
    "out_of_scope": "",
    "low_confidence": "这个问题我没有把握回答准确，",
    "still_unsure": "这个问题我没有把握回答准确，",
    "no_candidates": "知识库里没有找到能回答这个问题的内容，",
}
HANDOFF_TEXT = "已为您转接人工客服，工作人员会尽快在这里回复您，请稍候。"


def handoff(dispatcher: CollectingDispatcher, tracker: Tracker, reason: str, *, service: Optional[str] = None,
            aspect: Optional[str] = None, candidates: Optional[list[Candidate]] = None,
            confidence: Optional[float] = None) -> list[EventType]:
    """Tell the citizen a clerk takes over, hand the structured case to the gateway, and go silent."""
    payload = {
        "reason": reason,
        "service": service,
        "aspect": aspect,
        "candidates": [c.as_dict() for c in (candidates or [])],
        "confidence": None if confidence is None else round(float(confidence), 4),
    }
    prefix = "" if spoke_this_turn(tracker) else HANDOFF_PREFIX.get(reason, "")
    dispatcher.utter_message(text=prefix + HANDOFF_TEXT, json_message={"handoff": payload},
                             **meta("handoff", service=service, aspect=aspect, reason=reason))
    logger.info("handoff sender=%s reason=%s service=%s", tracker.sender_id, reason, service)
    events: list[EventType] = []
    if tracker.active_loop and tracker.active_loop.get("name"):
        events += [ActiveLoop(None), SlotSet("requested_slot", None)]
    return [*events, SlotSet("handed_off", True), ConversationPaused()]


def stop_form(tracker: Tracker) -> list[EventType]:
    """Leave the situation form when the conversation moved on (the answer covers the new question)."""
    if tracker.active_loop and tracker.active_loop.get("name"):
        return [ActiveLoop(None), SlotSet("requested_slot", None)]
    return []


_TIMING = logging.INFO if os.environ.get("GOVBOT_ACTION_TIMING") else logging.DEBUG


def timed(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Log how long an action's run took (debug level; info with GOVBOT_ACTION_TIMING=1, used by the benchmark)."""
    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        async def run(self: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> Any:
            started = time.perf_counter()
            try:
                return await fn(self, dispatcher, tracker, domain)
            finally:
                logger.log(_TIMING, "timing %s %.1f ms sender=%s", name, (time.perf_counter() - started) * 1e3,
                           tracker.sender_id)
        return run
    return wrap
