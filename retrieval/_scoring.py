"""Learned fusion of dense and lexical evidence, and the calibrated confidence of a hit.

Both are logistic regressions (scikit-learn) trained by `retrieval.train` on a dev split; their
coefficients live in weights.json beside this file with a record of what they were trained on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

WEIGHTS_FILE = Path(__file__).with_name("weights.json")

# Per (query, candidate unit): what fusion sees.
FUSION_FEATURES = (
    "dense",  # best cosine over the unit's entries
    "dense_gap",  # dense - best dense of any unit (<= 0)
    "dense_query",  # best cosine over question-like entries (name, alias, FAQ question); 0 if none
    "dense_passage",  # best cosine over passage entries (fields, answers, articles); 0 if none
    "lexical_rel",  # BM25 / best BM25 of any unit
    "lexical_log",  # log(1 + BM25)
    "dense_rrank",  # 1 / (1 + rank by dense)
    "lexical_rrank",  # 1 / (1 + rank by BM25)
    "chars_rel",  # character-bigram BM25 / its best of any unit
    "chars_rrank",  # 1 / (1 + rank by character-bigram BM25)
)
# Per hit: what the confidence model sees.
_PER_REGIME = ("fused", "margin", "lexical_rel", "dense_sharp", "dense_margin", "bias")
# The top hit matched either a question-like entry (a guide's name, alias, FAQ question: question-to-question
# similarity) or a passage (a field, an answer, an article: question-to-passage). The two live on different
# scales, so each regime gets its own weights (features multiplied by the regime indicator).
CONFIDENCE_FEATURES = tuple(f"{regime}_{name}" for regime in ("question", "passage") for name in _PER_REGIME)
COL = {name: i for i, name in enumerate(FUSION_FEATURES)}


def confidence_features(fused: np.ndarray, feats: np.ndarray) -> np.ndarray:
    """Rows of CONFIDENCE_FEATURES for hits sorted best first (`feats` in FUSION_FEATURES order).

    Margins are to the best *other* hit. `dense_sharp` = -log(1 - cosine) spreads the top of the cosine
    range, where a near-exact match (0.99) and a merely similar one (0.95) must be told apart."""
    n = len(fused)
    best_other = np.where(np.arange(n) == 0, fused[1] if n > 1 else fused[0] - 5.0, fused[0])
    dense = feats[:, COL["dense"]]
    dense_other = np.where(np.arange(n) == 0, dense[1] if n > 1 else dense[0] - 0.2, dense[0])
    sharp = -np.log(np.clip(1.001 - np.clip(dense, 0.0, 1.0), 1e-3, None))
    base = np.stack([fused, fused - best_other, feats[:, COL["lexical_rel"]], sharp, dense - dense_other,
                     np.ones(n)], axis=1)
    question = (feats[:, COL["dense_query"]] >= feats[:, COL["dense_passage"]]).astype(np.float64)[:, None]
    return np.concatenate([base * question, base * (1.0 - question)], axis=1)


@dataclass
class Linear:
    coef: np.ndarray
    intercept: float

    def decision(self, x: np.ndarray) -> np.ndarray:
        return x @ self.coef + self.intercept

    def proba(self, x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.decision(x)))


@dataclass
class Weights:
    fusion: Linear
    confidence: Linear
    threshold: float
    info: dict

    @classmethod
    def neutral(cls) -> Weights:
        """Dense ranking and no confidence: what training starts from (it never reads the fused score)."""
        fusion = np.array([1.0 if f == "dense" else 0.0 for f in FUSION_FEATURES])
        return cls(Linear(fusion, 0.0), Linear(np.zeros(len(CONFIDENCE_FEATURES)), 0.0), 0.5, {})

    @classmethod
    def load(cls, path: Path = WEIGHTS_FILE) -> Weights:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if tuple(raw["fusion"]["features"]) != FUSION_FEATURES or tuple(
            raw["confidence"]["features"]
        ) != CONFIDENCE_FEATURES:
            raise ValueError(f"{path}: feature list differs from the code; retrain with `make train`")
        return cls(
            Linear(np.array(raw["fusion"]["coef"], dtype=np.float64), float(raw["fusion"]["intercept"])),
            Linear(np.array(raw["confidence"]["coef"], dtype=np.float64), float(raw["confidence"]["intercept"])),
            float(raw["threshold"]),
            raw.get("info", {}),
        )

    def save(self, path: Path = WEIGHTS_FILE) -> None:
        raw = {
            "fusion": {"features": list(FUSION_FEATURES), "coef": self.fusion.coef.round(6).tolist(),
                       "intercept": round(self.fusion.intercept, 6)},
            "confidence": {"features": list(CONFIDENCE_FEATURES), "coef": self.confidence.coef.round(6).tolist(),
                           "intercept": round(self.confidence.intercept, 6)},
            "threshold": round(self.threshold, 4),
            "info": self.info,
        }
        path.write_text(json.dumps(raw, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
