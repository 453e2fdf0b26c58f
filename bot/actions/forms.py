"""situation_form: 一次告知 — ask which 情形 applies, then answer with the personalised materials checklist."""

from __future__ import annotations

import json
import re
from typing import Any, Optional

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher

from .common import ALL_SITUATIONS, entity_values, get_kb, guide, in_thread, intent_of, meta, timed, user_text

ASK_TEXT = "「{name}」需要的材料因情形而不同。请问您属于哪种情况？"
ALL_BUTTON = "不确定，列出全部材料"
RETRY_TEXT = "请点击下面的选项，或直接说出您的情况。"
_NOT_AN_ANSWER = {"request_human", "complain", "out_of_scope", "deny"}
_ALL = re.compile(r"不确定|不知道|不清楚|都有|全部|所有|都要|都看看")
_NUMERALS = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_GENERIC = {"办理", "申请", "需要", "情况", "材料", "人员", "的人"}


def _bigrams(text: str) -> set[str]:
    return {text[i:i + 2] for i in range(len(text) - 1)} - _GENERIC


def match_situation(g: Any, text: str) -> Optional[str]:
    """The situation id the citizen's words pick (a name, a distinctive word of it, or its button number)."""
    from nlu import normalize

    norm = normalize(text)
    ids = [s.id for s in g.situations]
    if norm in ids or norm == ALL_SITUATIONS:
        return norm
    m = re.fullmatch(r"(?:第)?([1-9一二两三四五六七八九])(?:个|种|项)?", norm)
    if m:
        n = int(m.group(1)) if m.group(1).isdigit() else _NUMERALS[m.group(1)]
        return ids[n - 1] if n <= len(ids) else None
    names = {s.id: normalize(s.name) for s in g.situations}
    exact = [sid for sid, name in names.items() if name in norm or (len(norm) >= 2 and norm in name)]
    if len(exact) == 1:
        return exact[0]
    if _ALL.search(norm):
        return ALL_SITUATIONS
    grams = {sid: _bigrams(name) for sid, name in names.items()}
    common = {b for b in set().union(*grams.values()) if sum(b in g_ for g_ in grams.values()) > 1}
    said = _bigrams(norm)
    scores = {sid: len((gs - common) & said) for sid, gs in grams.items()}
    best = max(scores.values(), default=0)
    winners = [sid for sid, s in scores.items() if s == best]
    return winners[0] if best >= 1 and len(winners) == 1 else None


class ActionAskSituation(Action):
    def name(self) -> str:
        return "action_ask_situation"

    @timed("action_ask_situation")
    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[EventType]:
        kb = await in_thread(get_kb)
        g = guide(kb, tracker.get_slot("service"))
        if g is None or not g.situations:
            dispatcher.utter_message(response="utter_ask_rephrase")
            return []
        buttons = [{"title": s.name, "payload": "/inform" + json.dumps({"situation": s.id}, ensure_ascii=False)}
                   for s in g.situations]
        buttons.append({"title": ALL_BUTTON, "payload": "/inform" + json.dumps({"situation": ALL_SITUATIONS})})
        dispatcher.utter_message(text=ASK_TEXT.format(name=g.name), buttons=buttons,
                                 **meta("ask_situation", service=g.id, aspect="materials",
                                        situations=[s.id for s in g.situations]))
        return []


class ValidateSituationForm(FormValidationAction):
    def name(self) -> str:
        return "validate_situation_form"

    async def extract_situation(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                                domain: dict) -> dict[str, Any]:
        """A typed answer (「我是代办」, 「2」); buttons arrive as the `situation` entity and need nothing here."""
        if tracker.get_slot("requested_slot") != "situation" or entity_values(tracker, "situation"):
            return {}
        text = user_text(tracker)
        if not text or intent_of(tracker) in _NOT_AN_ANSWER or len(text) > 40:
            return {}
        kb = await in_thread(get_kb)
        g = guide(kb, tracker.get_slot("service"))
        found = match_situation(g, text) if g is not None and g.situations else None
        return {"situation": found} if found else {}

    async def validate_situation(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                                 domain: dict) -> dict[str, Any]:
        kb = await in_thread(get_kb)
        g = guide(kb, tracker.get_slot("service"))
        if g is None or not g.situations:
            return {"situation": ALL_SITUATIONS}
        found = match_situation(g, str(value)) if value is not None else None
        if found:
            return {"situation": found}
        dispatcher.utter_message(text=RETRY_TEXT)
        return {"situation": None}
