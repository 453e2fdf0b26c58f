"""Embedding speed on this CPU, and what int8 dynamic quantisation buys and costs.

Speed: passages of the Beijing FAQ (official answers) encoded with the passage prompt — fp32 in arrival
order (the baseline), fp32 sorted by length (what the index build does), and int8
(torch dynamic quantisation of the Linear layers) sorted; plus batch-1 question latency.
Quality: dense-only R@1/R@5 of dev questions against a subset of answers, fp32 vs int8.
All ratios are against the fp32 baseline measured in the same run.

    python -m bench.embed_speed [--speed-passages 120] [--quality-answers 300]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from retrieval._embedder import ensure_default_model
from retrieval.settings import get_settings

from .faq_data import prepare


def encode(model, texts: list[str], batch: int, sort: bool) -> tuple[np.ndarray, float]:  # type: ignore[no-untyped-def]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i])) if sort else list(range(len(texts)))
    t0 = time.perf_counter()
    out = np.zeros((len(texts), 384), dtype=np.float32)
    for start in range(0, len(order), batch):
        idx = order[start : start + batch]
        out[idx] = model.encode([texts[i] for i in idx], batch_size=batch, normalize_embeddings=True)
    return out, time.perf_counter() - t0


def recall(q: np.ndarray, a: np.ndarray, gold: list[int]) -> tuple[float, float]:
    ranks = np.argsort(-(q @ a.T), axis=1)[:, :5]
    r1 = float(np.mean([ranks[i, 0] == g for i, g in enumerate(gold)]))
    r5 = float(np.mean([g in ranks[i] for i, g in enumerate(gold)]))
    return round(r1, 3), round(r5, 3)


def main() -> None:
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    parser = argparse.ArgumentParser()
    parser.add_argument("--speed-passages", type=int, default=120)
    parser.add_argument("--quality-answers", type=int, default=300)
    args = parser.parse_args()
    hf_logging.disable_progress_bar()
    settings = get_settings()
    torch.set_num_threads(settings.torch_threads)
    path = ensure_default_model(settings)
    fp32 = SentenceTransformer(str(path), device="cpu")
    int8 = torch.ao.quantization.quantize_dynamic(
        SentenceTransformer(str(path), device="cpu"), {torch.nn.Linear}, dtype=torch.qint8
    )
    paths = prepare(settings.cache_dir / "eval")
    kb = [json.loads(x) for x in paths["kb"].open(encoding="utf-8")]
    passages = ["passage: " + r["answer"] for r in kb[: args.speed_passages]]
    tokens = sum(min(len(fp32.tokenizer(p)["input_ids"]), 512) for p in passages)
    result: dict[str, object] = {"passages": len(passages), "tokens": tokens}
    runs = {}
    for name, model, sort in (("fp32 arrival order", fp32, False), ("fp32 sorted by length", fp32, True),
                              ("int8 sorted by length", int8, True)):
        _, seconds = encode(model, passages, 32, sort)
        runs[name] = {"seconds": round(seconds, 1), "tokens_per_s": round(tokens / seconds, 1)}
        print(name, runs[name], flush=True)
    base = runs["fp32 arrival order"]["tokens_per_s"]
    for r in runs.values():
        r["speed_ratio"] = round(r["tokens_per_s"] / base, 2)
    result["throughput"] = runs
    questions = ["query: " + q["query"] for q in map(json.loads, paths["dev"].open(encoding="utf-8"))][:50]
    latency = {}
    for name, model in (("fp32", fp32), ("int8", int8)):
        times = []
        for q in questions:
            t0 = time.perf_counter()
            model.encode([q])
            times.append((time.perf_counter() - t0) * 1000)
        latency[name] = round(statistics.median(times), 1)
    latency["int8_ratio"] = round(latency["int8"] / latency["fp32"], 2)
    result["query_latency_ms_median"] = latency
    answers = kb[: args.quality_answers]
    index = {r["id"]: i for i, r in enumerate(answers)}
    dev = [q for q in map(json.loads, paths["dev"].open(encoding="utf-8")) if q["expected"] in index]
    gold = [index[q["expected"]] for q in dev]
    quality = {}
    vectors = {}
    for name, model in (("fp32", fp32), ("int8", int8)):
        a, _ = encode(model, ["passage: " + r["answer"] for r in answers], 32, True)
        q, _ = encode(model, ["query: " + x["query"] for x in dev], 32, True)
        vectors[name] = a
        r1, r5 = recall(q, a, gold)
        quality[name] = {"recall_at_1": r1, "recall_at_5": r5}
    quality["mean_cosine_fp32_int8"] = round(float(np.mean(np.sum(vectors["fp32"] * vectors["int8"], axis=1))), 4)
    quality["questions"] = len(dev)
    quality["answers"] = len(answers)
    result["quality_dense_only"] = quality
    print(json.dumps(result, ensure_ascii=False, indent=2))
    out = Path("bench/results/embed_speed.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
