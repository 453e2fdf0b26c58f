"""Retrieval over the knowledge base: hybrid dense (FAISS) + BM25 search with a calibrated confidence.

    from retrieval import KnowledgeService
    kb = KnowledgeService()
    kb.search("身份证丢了怎么补办")      # -> list[Hit]
    kb.answer("身份证丢了怎么补办")      # -> Answer(decision, cards, hits)
"""

from .answers import guide_card, render_card_text
from .search import Hit, Retriever
from .service import Answer, CorpusError, KnowledgeService, build_corpus_index
from .settings import Settings, get_settings

__all__ = [
    "Answer", "CorpusError", "Hit", "KnowledgeService", "Retriever", "Settings", "build_corpus_index",
    "get_settings", "guide_card", "render_card_text",
]
