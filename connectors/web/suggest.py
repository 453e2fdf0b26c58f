"""Input suggestions and 猜你想问 for the widget, from the knowledge base (service names, aliases, FAQ questions).

Matching is deliberately simple and fast (a few hundred short strings): the query is normalised like the NLU does
(繁→简, 全角→半角), then prefix > substring > shared character bigrams. No index, no model.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional

from knowledge import Corpus
from nlu.normalize import normalize

# 猜你想问: common citizen questions, shown in this order when their service exists in the knowledge base.
HOT_QUESTIONS: tuple[tuple[str, str], ...] = (
    ("id-card-reissue", "身份证丢了怎么补办"),
    ("hukou-newborn", "新生儿怎么上户口"),
    ("passport", "办护照需要什么材料"),
    ("housing-fund-rent-withdrawal", "租房怎么提取公积金"),
    ("social-security-card", "社保卡怎么办理"),
    ("marriage-registration", "结婚登记要带什么"),
    ("driving-license-renew", "驾驶证到期怎么换证"),
    ("medical-cross-region-filing", "异地就医怎么备案"),
)
MAX_QUERY_CHARS = 50


@dataclass(frozen=True)
class Suggestion:
    text: str  # what goes into the input box
    kind: str  # "service" | "faq"
    service: Optional[str]
    key: str  # normalised text for matching
    also: tuple[str, ...] = ()  # normalised aliases that lead to this suggestion

    def view(self) -> dict[str, Any]:
        return {"text": self.text, "kind": self.kind, "service": self.service,
                "label": "办事指南" if self.kind == "service" else "常见问题"}


def _bigrams(text: str) -> set[str]:
    return {text[i:i + 2] for i in range(len(text) - 1)} or ({text} if text else set())


class Suggester:
    """Suggestions over one corpus; `corpus_source` is called on every request so a reloaded index is picked up."""

    def __init__(self, corpus_source: Callable[[], Corpus]) -> None:
        self._source = corpus_source
        self._lock = threading.Lock()
        self._corpus: Optional[Corpus] = None
        self._entries: list[Suggestion] = []

    def _current(self) -> list[Suggestion]:
        corpus = self._source()
        with self._lock:
            if corpus is not self._corpus:
                self._entries = self._build(corpus)
                self._corpus = corpus
            return self._entries

    @staticmethod
    def _build(corpus: Corpus) -> list[Suggestion]:
        out: list[Suggestion] = []
        for guide in corpus.guides.values():
            out.append(Suggestion(guide.name, "service", guide.id, normalize(guide.name),
                                  tuple(normalize(a) for a in guide.aliases)))
        seen: set[str] = set()
        for faq in corpus.faq:
            key = normalize(faq.question)
            if key in seen:
                continue
            seen.add(key)
            out.append(Suggestion(faq.question, "faq", faq.service, key))
        return out

    def suggest(self, query: str, limit: int = 8) -> list[dict[str, Any]]:
        q = normalize(query[:MAX_QUERY_CHARS])
        if not q:
            return []
        qgrams = _bigrams(q)
        scored: list[tuple[float, int, Suggestion]] = []
        for order, entry in enumerate(self._current()):
            keys = (entry.key, *entry.also)
            if any(k.startswith(q) for k in keys):
                score = 3.0
            elif any(q in k for k in keys):
                score = 2.0
            else:
                overlap = max(len(qgrams & _bigrams(k)) / len(qgrams) for k in keys)
                if overlap < 0.5 or len(q) < 2:
                    continue
                score = overlap
            if entry.kind == "service":
                score += 0.5  # a service name is the better completion at equal match quality
            scored.append((score, order, entry))
        scored.sort(key=lambda t: (-t[0], len(t[2].text), t[1]))
        return [entry.view() for _, _, entry in scored[:limit]]

    def hot(self, limit: int = 6) -> list[dict[str, Any]]:
        corpus = self._source()
        out: list[dict[str, Any]] = [{"text": t, "service": sid} for sid, t in HOT_QUESTIONS if sid in corpus.guides]
        if len(out) < limit:  # a different knowledge base: its first FAQ questions instead
            known = {o["text"] for o in out}
            out += [{"text": f.question, "service": f.service} for f in corpus.faq if f.question not in known]
        return out[:limit]
