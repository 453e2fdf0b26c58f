"""Hybrid search: FAISS dense + BM25 lexical, fused by learned weights, with a calibrated confidence."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from nlu import normalize

from ._embedder import Embedder
from ._index import IndexData, load_index_folder
from ._lexical import char_grams
from ._scoring import COL, FUSION_FEATURES, Weights, confidence_features

CANDIDATES = 30  # units taken from each of the dense and the lexical ranking before fusion
DENSE_ENTRIES = 256  # entries read from FAISS per query


def _ranks(order: np.ndarray) -> np.ndarray:
    """Position of each unit in `order` (the inverse permutation)."""
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = np.arange(len(order))
    return ranks


@dataclass
class Hit:
    doc_id: str
    kind: str  # guide | faq | policy
    field: str  # the entry that matched best: name, alias, faq, materials, answer, policy, ...
    title: str
    text: str  # the matched entry's text
    scores: dict[str, float]
    confidence: float
    service: Optional[str] = None
    ref: str = ""  # FAQ id when a linked FAQ question matched
    features: dict[str, float] = dc_field(default_factory=dict, repr=False)


class Retriever:
    """Search one index. `reload()` swaps in a newly published index without a restart."""

    def __init__(self, index_dir: Path, embedder: Embedder, weights: Optional[Weights] = None,
                 threshold: Optional[float] = None) -> None:
        self.index_dir = index_dir
        self.embedder = embedder
        self.weights = weights or Weights.load()
        self.threshold = self.weights.threshold if threshold is None else threshold
        self._lock = threading.Lock()
        self.data: IndexData = load_index_folder(index_dir.resolve())

    def reload(self) -> bool:
        """Load the index `index_dir` points at now, if it changed. Searches in flight keep the old one."""
        target = self.index_dir.resolve()
        if target == self.data.folder:
            return False
        data = load_index_folder(target)
        with self._lock:
            self.data = data
        return True

    # -- scoring -------------------------------------------------------------------------------------
    def candidates(self, query: str, exclude: Sequence[int] = (), exclude_entries: Sequence[int] = ()
                   ) -> tuple[IndexData, list[int], np.ndarray]:
        """Candidate unit ids and their fusion features (rows in FUSION_FEATURES order).

        `exclude` hides units, `exclude_entries` single entries, as if they were not indexed: training
        uses them to simulate unanswerable questions and to keep a question from matching itself."""
        data, cand, feats, _ = self._candidates(query, exclude, exclude_entries)
        return data, cand, feats

    def _candidates(self, query: str, exclude: Sequence[int] = (), exclude_entries: Sequence[int] = (),
                    include_ids: Sequence[str] = ()) -> tuple[IndexData, list[int], np.ndarray, np.ndarray]:
        data = self.data  # one snapshot for the whole query, even if reload() swaps the index meanwhile
        include = [data.unit_index[i] for i in include_ids if i in data.unit_index]
        skip = set(exclude_entries)
        n_units = len(data.units)
        text = normalize(query)
        qv = self.embedder.encode([text], "query", persist=False)
        k = min(DENSE_ENTRIES, len(data.entries))
        dense = np.full(n_units, -1.0, dtype=np.float32)
        dense_query = np.zeros(n_units, dtype=np.float32)
        dense_passage = np.zeros(n_units, dtype=np.float32)
        if k:
            sims, ids = data.vectors.search(qv, k)
            for s, i in zip(sims[0], ids[0]):
                if i < 0 or i in skip:
                    continue
                u = data.entry_unit[i]
                if s > dense[u]:
                    dense[u] = s
                if data.entry_is_query[i]:
                    dense_query[u] = max(dense_query[u], s)
                else:
                    dense_passage[u] = max(dense_passage[u], s)
        for u in include:  # a unit asked for by id is scored exactly, even if FAISS did not return it
            run = self._entries_of(data, u)
            sims_u = np.stack([data.vectors.reconstruct(int(i)) for i in run]) @ qv[0]
            dense[u] = float(sims_u.max())
            is_query = data.entry_is_query[run]
            dense_query[u] = float(sims_u[is_query].max()) if is_query.any() else 0.0
            dense_passage[u] = float(sims_u[~is_query].max()) if (~is_query).any() else 0.0
        lexical = self._lexical_units(data, data.bm25.scores(data.tokens(text)), skip)
        chars = self._lexical_units(data, data.bm25_chars.scores(char_grams(text)), skip)
        if len(exclude):
            dense[list(exclude)] = -1.0
            dense_query[list(exclude)] = dense_passage[list(exclude)] = 0.0
            lexical[list(exclude)] = chars[list(exclude)] = 0.0
        by_dense = np.argsort(-dense)
        by_lex = np.argsort(-lexical)
        by_chars = np.argsort(-chars)
        cand = list(dict.fromkeys([*by_dense[:CANDIDATES].tolist(),
                                   *[u for u in by_lex[:CANDIDATES] if lexical[u] > 0],
                                   *[u for u in by_chars[:CANDIDATES] if chars[u] > 0], *include]))
        dense_rank, lex_rank, chars_rank = (_ranks(order) for order in (by_dense, by_lex, by_chars))
        top_chars = float(chars[by_chars[0]]) if n_units else 0.0
        top_dense = float(dense[by_dense[0]]) if n_units else 0.0
        top_lex = float(lexical[by_lex[0]]) if n_units else 0.0
        c = np.array(cand, dtype=np.int64)
        feats = np.stack(
            [
                dense[c],
                dense[c] - top_dense,
                dense_query[c],
                dense_passage[c],
                lexical[c] / (top_lex + 1e-6),
                np.log1p(lexical[c]),
                1.0 / (1.0 + dense_rank[c]),
                np.where(lexical[c] > 0, 1.0 / (1.0 + lex_rank[c]), 0.0),
                chars[c] / (top_chars + 1e-6),
                np.where(chars[c] > 0, 1.0 / (1.0 + chars_rank[c]), 0.0),
            ],
            axis=1,
        ).astype(np.float64) if len(c) else np.zeros((0, len(FUSION_FEATURES)))
        return data, cand, feats, qv[0]

    def search(self, query: str, *, service: Optional[str] = None, aspect: Optional[str] = None,
               region: Optional[str] = None, k: int = 5) -> list[Hit]:
        """Best units for `query`, most likely first; `confidence` is P(this hit is the right answer)."""
        data, cand, feats, qv = self._candidates(query, include_ids=(service,) if service else ())
        if not cand:
            return []
        fused = self.weights.fusion.decision(feats)
        keep = np.ones(len(cand), dtype=bool)
        for j, u in enumerate(cand):
            unit = data.units[u]
            if service and unit.service != service:
                keep[j] = False
            if region and unit.kind == "guide" and unit.meta.get("region") not in (region, "全国通用", "", None):
                keep[j] = False
        order = [j for j in np.argsort(-fused) if keep[j]][:k]
        if not order:
            return []
        conf = self.confidence(fused[order], feats[order])
        hits = []
        for rank, j in enumerate(order):
            unit = data.units[cand[j]]
            entry = self._best_entry(data, cand[j], qv, aspect)
            hits.append(
                Hit(
                    doc_id=unit.id, kind=unit.kind, field=entry.field if entry else unit.kind, title=unit.title,
                    text=entry.text if entry else unit.text,
                    scores={"dense": float(feats[j, COL["dense"]]), "lexical": float(feats[j, COL["lexical_log"]]),
                            "fused": float(fused[j])},
                    confidence=float(conf[rank]), service=unit.service, ref=entry.ref if entry else "",
                    features=dict(zip(FUSION_FEATURES, map(float, feats[j]))),
                )
            )
        return hits

    def confidence(self, fused_sorted: np.ndarray, feats_sorted: np.ndarray) -> np.ndarray:
        """Calibrated probability per hit (hits sorted best first)."""
        return self.weights.confidence.proba(confidence_features(fused_sorted, feats_sorted))

    def _best_entry(self, data: IndexData, unit: int, qv: np.ndarray, aspect: Optional[str]) -> Any:
        """The unit's entry that best explains the match (the asked field wins when given)."""
        idx = self._entries_of(data, unit)
        if aspect:
            for i in idx:
                if data.entries[i].field == aspect:
                    return data.entries[i]
        vecs = np.stack([data.vectors.reconstruct(int(i)) for i in idx])
        return data.entries[int(idx[int(np.argmax(vecs @ qv))])]

    @staticmethod
    def _lexical_units(data: IndexData, entry_scores: np.ndarray, skip: set[int]) -> np.ndarray:
        """Best entry score per unit."""
        if skip:
            entry_scores[list(skip)] = 0.0
        out = np.zeros(len(data.units), dtype=np.float32)
        np.maximum.at(out, data.entry_unit, entry_scores)
        return out

    @staticmethod
    def _entries_of(data: IndexData, unit: int) -> np.ndarray:
        # entries are written unit by unit, so a unit's entries are one contiguous, sorted run
        return np.arange(*np.searchsorted(data.entry_unit, [unit, unit + 1]))

    def is_confident(self, hit: Hit) -> bool:
        return hit.confidence >= self.threshold
