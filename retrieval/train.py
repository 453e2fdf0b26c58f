"""`python -m retrieval.train` (make train): learn fusion weights and the confidence model on the dev split.

Data: the Beijing government FAQ dev questions (../shared/data, see bench/faq_data.py) against its answers,
each question seen twice: once as is, once with its answer hidden from the index (as if the knowledge
base lacked it), so the confidence model learns when to hand off. The threshold is the lowest that keeps
wrong answers at or below TARGET_WRONG of the answered questions in that mix.
"""

from __future__ import annotations

import hashlib
import pickle
import shutil
import sys
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from ._embedder import Embedder
from ._scoring import Linear, Weights, confidence_features
from .evaluate import load_kb, load_questions, temporary_retriever
from .search import Retriever
from .settings import Settings, get_settings

TARGET_WRONG = 0.05


def collect(retriever: Retriever, questions: list[tuple[str, str | None]],
            own_entries: list[list[int]] | None = None) -> list[dict]:
    """Candidates and features per (question, hidden?) pair. `own_entries[i]`: index entries that are
    question i itself (a guide's alias or FAQ question), hidden so the question cannot match itself."""
    unit_index = {u.id: i for i, u in enumerate(retriever.data.units)}
    rows = []
    for n, (query, expected) in enumerate(questions, start=1):
        gold = unit_index.get(expected) if expected else None
        variants = [False, True] if gold is not None else [True]
        own = own_entries[n - 1] if own_entries else []
        for hidden in variants:
            _, cand, feats = retriever.candidates(query, exclude=[gold] if hidden and gold is not None else [],
                                                  exclude_entries=own)
            labels = np.array([(not hidden) and c == gold for c in cand], dtype=int)
            rows.append({"feats": feats, "labels": labels, "answerable": not hidden})
        if n % 100 == 0:
            print(f"  features: {n}/{len(questions)}", flush=True)
    return rows


def collect_corpus(settings: Settings, work: Path) -> tuple[list[dict], int]:
    """The bundled guides as a second domain: their linked FAQ questions and aliases, asked of the index."""
    from .service import build_corpus_index

    local = settings.model_copy(update={"index_dir": work / "corpus-index"})
    folder, _ = build_corpus_index(local)
    retriever = Retriever(folder, Embedder(settings), Weights.neutral())
    data = retriever.data
    questions: list[tuple[str, str | None]] = []
    own: list[list[int]] = []
    for i, entry in enumerate(data.entries):
        unit = data.units[entry.unit]
        if unit.kind == "guide" and entry.field in ("faq", "alias"):
            questions.append((entry.text, unit.id))
            own.append([i])
    print(f"train: {len(questions)} questions from the bundled corpus", flush=True)
    return collect(retriever, questions, own), len(questions)


def fit_fusion(rows: list[dict]) -> Linear:
    x = np.concatenate([r["feats"] for r in rows if r["answerable"]])
    y = np.concatenate([r["labels"] for r in rows if r["answerable"]])
    model = LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced").fit(x, y)
    return Linear(model.coef_[0].astype(np.float64), float(model.intercept_[0]))


def confidence_table(rows: list[dict], fusion: Linear) -> tuple[np.ndarray, np.ndarray]:
    """Features of each question's top hit, and whether it is the right answer."""
    xs, ys = [], []
    for r in rows:
        if not len(r["feats"]):
            continue
        fused = fusion.decision(r["feats"])
        order = np.argsort(-fused)[:5]
        xs.append(confidence_features(fused[order], r["feats"][order])[0])
        ys.append(int(r["labels"][order[0]]))
    return np.array(xs), np.array(ys)


def choose_threshold(p: np.ndarray, y: np.ndarray, target: float = TARGET_WRONG) -> float:
    for t in np.linspace(0.05, 0.99, 95):
        answered = p >= t
        if answered.sum() and (1 - y[answered]).sum() / answered.sum() <= target:
            return float(t)
    return 0.99


def main() -> int:
    from bench.faq_data import prepare  # the dev data lives with the benchmarks

    settings = get_settings()
    paths = prepare(settings.cache_dir / "eval")
    kb = load_kb(paths["kb"])
    questions = load_questions(paths["dev"])
    work = settings.cache_dir / "train"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    print(f"train: indexing {len(kb)} answers (embeddings are cached)", flush=True)
    retriever, _ = temporary_retriever(kb, settings, work, weights=Weights.neutral())
    cached = settings.cache_dir / "train-rows.pkl"
    if "--reuse" in sys.argv and cached.exists():  # iterate on the models without recomputing features
        rows, n_corpus = pickle.loads(cached.read_bytes())
    else:
        rows = collect(retriever, questions)
        corpus_rows, n_corpus = collect_corpus(settings, work)
        rows += corpus_rows
        cached.write_bytes(pickle.dumps((rows, n_corpus)))
    fusion = fit_fusion(rows)
    # The confidence model is fitted on one half of the questions and its threshold chosen on the other,
    # so the threshold is not tuned on the very rows the model has seen.
    half = np.array([int(hashlib.sha256(str(i // 2).encode()).hexdigest()[:2], 16) % 2 for i in range(len(rows))])
    xa, ya = confidence_table([r for r, h in zip(rows, half) if h == 0], fusion)
    xb, yb = confidence_table([r for r, h in zip(rows, half) if h == 1], fusion)
    model = LogisticRegression(C=1.0, max_iter=5000, fit_intercept=False).fit(xa, ya)  # bias is per regime
    confidence = Linear(model.coef_[0].astype(np.float64), float(model.intercept_[0]))
    threshold = choose_threshold(confidence.proba(xb), yb)
    kb_hash = hashlib.sha256(paths["kb"].read_bytes()).hexdigest()[:16]
    weights = Weights(fusion, confidence, threshold, {
        "trained_on": "beijing_gov_faq.jsonl dev split (bench/faq_data.py) and the bundled corpus's own FAQ "
                      "questions and aliases (each hiding itself); every question also with its answer hidden",
        "kb_sha256_16": kb_hash, "questions": len(questions), "corpus_questions": n_corpus,
        "target_wrong_rate": TARGET_WRONG,
        "command": "make train",
    })
    weights.save()
    print(f"train: fusion coef {np.round(fusion.coef, 3).tolist()}, threshold {threshold:.2f}; wrote retrieval/weights.json")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
