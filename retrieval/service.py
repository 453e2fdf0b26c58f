"""The knowledge index of a deployment: build it when its inputs change, serve answers from it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from knowledge import Problem, load_corpus
from nlu import detect_aspect

from ._embedder import Embedder
from ._index import build_index_folder, corpus_dictionary_words, corpus_units, inputs_hash, publish
from .answers import guide_card
from .search import Hit, Retriever
from .settings import Settings, get_settings

ProgressFn = Callable[[str, int, int], None]
CLARIFY_SHARE = 0.3  # below threshold but at least this share of it: clarify with candidates


class CorpusError(Exception):
    """The knowledge base has problems; nothing was built and the previous index stays in place."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(f"{len(problems)} problem(s) in the knowledge base")
        self.problems = problems


def build_corpus_index(
    settings: Optional[Settings] = None, corpus_dir: Optional[Path] = None, name: str = "corpus",
    progress: Optional[ProgressFn] = None, embedder: Optional[Embedder] = None,
) -> tuple[Path, bool]:
    """Validate the corpus and (re)build its index if its inputs changed. Returns (folder, built_now)."""
    settings = settings or get_settings()
    root = corpus_dir or settings.corpus_dir
    corpus, problems = load_corpus(root)
    if problems:
        raise CorpusError(problems)
    embedder = embedder or Embedder(settings)
    units, entries = corpus_units(corpus, settings.max_passage_chars)
    name_dir = settings.index_root / name
    version = name_dir / inputs_hash(units, entries, embedder, extra=f"{corpus.content_hash()}:{settings.index_kind}")[:16]
    built = False
    if not (version / "manifest.json").exists():
        name_dir.mkdir(parents=True, exist_ok=True)
        build_index_folder(version, units, entries, embedder, corpus_dictionary_words(corpus),
                           settings.index_kind, corpus_root=root, progress=progress)
        built = True
    publish(name_dir, version)
    return version, built


@dataclass
class Answer:
    """What the bot may say: cards from the knowledge base, or a decision to clarify / hand off."""

    decision: str  # answer | clarify | handoff
    query: str
    aspect: Optional[str]
    cards: list[dict[str, Any]] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)
    confidence: float = 0.0


RELOAD_CHECK_S = 2.0  # how often search() checks whether a newer index was published


class KnowledgeService:
    def __init__(self, settings: Optional[Settings] = None, name: str = "corpus") -> None:
        self.settings = settings or get_settings()
        self.embedder = Embedder(self.settings)
        self.name = name
        self._retriever: Optional[Retriever] = None
        self._lock = threading.Lock()
        self._checked = time.monotonic()

    @property
    def retriever(self) -> Retriever:
        with self._lock:
            if self._retriever is None:
                current = self.settings.index_root / self.name / "current"
                if not current.exists():
                    build_corpus_index(self.settings, name=self.name, embedder=self.embedder)
                self._retriever = Retriever(current, self.embedder, threshold=self.settings.confidence_threshold)
            return self._retriever

    def reload(self) -> bool:
        return self.retriever.reload()

    def search(self, query: str, *, service: Optional[str] = None, aspect: Optional[str] = None,
               region: Optional[str] = None, k: int = 5) -> list[Hit]:
        # Another process (the admin approving desk knowledge) may have published a new index: look at the
        # `current` link now and then, so every process answers from it without a restart.
        if time.monotonic() - self._checked > RELOAD_CHECK_S:
            self._checked = time.monotonic()
            self.reload()
        return self.retriever.search(query, service=service, aspect=aspect, region=region, k=k)

    def answer(self, query: str, *, aspect: Optional[str] = None, service: Optional[str] = None,
               situation: Optional[str] = None, region: Optional[str] = None) -> Answer:
        """Answer extractively when confident; otherwise say whether to clarify or hand off."""
        aspect = aspect or detect_aspect(query)
        hits = self.search(query, service=service, region=region, k=5)
        if not hits:
            return Answer("handoff", query, aspect)
        top = hits[0]
        if service and top.doc_id == service and top.kind == "guide":
            # The conversation already settled which service this is (a slot, a button): the retrieval
            # gate is for finding the document, and the asked field comes from the guide itself.
            return Answer("answer", query, aspect, self.cards(top, aspect, situation), hits, top.confidence)
        if not self.retriever.is_confident(top):
            # A plausible but unproven match is worth a question (「您是想问…吗？」); a weak one is not.
            decision = "clarify" if top.confidence >= CLARIFY_SHARE * self.retriever.threshold else "handoff"
            return Answer(decision, query, aspect, hits=hits, confidence=top.confidence)
        return Answer("answer", query, aspect, self.cards(top, aspect, situation), hits, top.confidence)

    def cards(self, hit: Hit, aspect: Optional[str], situation: Optional[str] = None) -> list[dict[str, Any]]:
        data = self.retriever.data
        if hit.kind == "guide" and data.corpus is not None:
            guide = data.corpus.guides[hit.doc_id]
            if hit.field == "faq" and hit.ref and not aspect:
                faq = next(f for f in data.corpus.faq if f.id == hit.ref)
                return [_text_card(hit, faq.question, faq.answer, guide.updated, guide.source, "常见问题")]
            aspects = [aspect] if aspect else ["materials", "procedure"]
            return [guide_card(guide, a, situation, hit.confidence) for a in aspects]
        unit = data.units[data.unit_index[hit.doc_id]]
        label = "政策文件" if unit.kind == "policy" else "常见问题"
        return [_text_card(hit, unit.title, unit.text, unit.meta.get("date", ""), unit.meta.get("source", ""), label)]


def _text_card(hit: Hit, title: str, text: str, updated: str, source: str, label: str) -> dict[str, Any]:
    return {
        "service": hit.service,
        "service_name": title,
        "aspect": hit.kind,
        "aspect_label": label,
        "situation": None,
        "items": [text],
        "source": {"guide": hit.doc_id, "title": title, "field": label, "updated": updated, "source": source,
                   "basis": ""},
        "confidence": hit.confidence,
    }
