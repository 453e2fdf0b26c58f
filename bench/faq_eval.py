"""Retrieval quality on the Beijing government FAQ (make eval): BM25-only, dense-only and the learned hybrid on
the dev split (tuned on) and the test split (never tuned on), then the hand-off decision with half of the
answers removed (`--drop-answerable 0.5`), all through the production index and search.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np

from retrieval._scoring import FUSION_FEATURES, Linear, Weights
from retrieval.evaluate import evaluate_faq, load_kb, load_questions, score, temporary_retriever
from retrieval.settings import get_settings

from .faq_data import prepare

OUT = Path("bench/results/faq_eval.json")


def single_signal(weights: Weights, feature: str) -> Weights:
    """Rank by one signal alone (the confidence model and threshold stay as learned)."""
    coef = np.array([1.0 if f == feature else 0.0 for f in FUSION_FEATURES])
    return replace(weights, fusion=Linear(coef, 0.0))


def main() -> None:
    settings = get_settings()
    paths = prepare(settings.cache_dir / "eval")
    kb = load_kb(paths["kb"])
    work = settings.cache_dir / "bench-faq"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    retriever, build_s = temporary_retriever(kb, settings, work)
    learned = retriever.weights
    present = {k.id for k in kb}
    results: dict[str, dict] = {}
    for split in ("dev", "test"):
        questions = load_questions(paths[split])
        for name, weights in (("bm25", single_signal(learned, "lexical_log")),
                              ("dense", single_signal(learned, "dense")), ("hybrid", learned)):
            retriever.weights = weights
            retriever.embedder.clear_query_cache()  # each run pays for embedding its questions, as in service
            results[f"{split}/{name}"] = score(retriever, questions, present, build_s)
            print(split, name, json.dumps(results[f"{split}/{name}"]), flush=True)
    retriever.weights = learned
    shutil.rmtree(work, ignore_errors=True)
    for split in ("dev", "test"):
        r = evaluate_faq(paths["kb"], paths[split], drop_answerable=0.5, seed=0, settings=settings)
        results[f"{split}/hybrid drop 0.5"] = r
        print(split, "drop 0.5", json.dumps(r), flush=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, ensure_ascii=False, indent=2), encoding="utf-8")
    print("\n| run | R@1 | R@5 | MRR@10 | answered | wrong / answered | unanswerable handed off |")
    print("|---|---|---|---|---|---|---|")
    for key, r in results.items():
        wrong = r["answered_wrong"] / max(r["answered"], 1)
        unans = f"{r['unanswerable_handed_off']}/{r['unanswerable']}" if r["unanswerable"] else "–"
        print(f"| {key} | {r['recall_at_1']:.3f} | {r['recall_at_5']:.3f} | {r['mrr_at_10']:.3f} | "
              f"{r['answered']}/{r['n']} | {wrong:.3f} | {unans} |")


if __name__ == "__main__":
    main()
