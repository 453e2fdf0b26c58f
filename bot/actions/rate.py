"""action_rate: 好差评 on the last answer. The gateway stores it from the `custom` payload (DESIGN.md §3.6)."""

from __future__ import annotations

import re
from typing import Optional

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher

from .common import entity_values, latest_meta, logger, meta, timed, user_text

_BAD = re.compile(r"差评|不满意|不好|没用|没有用|没帮助|没有帮助|不对|太差|垃圾|👎|不行|一星|1星|零分|0分")
_GOOD = re.compile(r"好评|满意|有用|有帮助|很好|不错|点赞|赞|👍|解决了|五星|5星|满分")
_VALUES = {"good": "good", "bad": "bad", "好评": "good", "差评": "bad", "满意": "good", "不满意": "bad"}


def rating_value(tracker: Tracker) -> Optional[str]:
    for value in entity_values(tracker, "rating"):
        if value in _VALUES:
            return _VALUES[value]
    text = user_text(tracker) or ""
    if _BAD.search(text):
        return "bad"
    if _GOOD.search(text):
        return "good"
    return None


class ActionRate(Action):
    def name(self) -> str:
        return "action_rate"

    @timed("action_rate")
    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[EventType]:
        value = rating_value(tracker)
        answered = latest_meta(tracker, lambda m: m.get("kind") == "answer") or {}
        rating = {"value": value, "service": answered.get("service"), "aspect": answered.get("aspect")}
        text = "感谢您的评价，我们会继续改进。" if value == "bad" else "感谢您的评价！"
        dispatcher.utter_message(text=text, json_message={"rating": rating}, **meta("rate", **rating))
        logger.info("rating sender=%s %s", tracker.sender_id, rating)
        return []
