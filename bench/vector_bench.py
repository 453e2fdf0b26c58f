"""FAISS choices at 1k–1M vectors: build time, query latency (batch 1) and memory, with ratios against
exact (flat) search measured in the same run. Synthetic unit vectors of the model's dimension (384).

    make bench                        # all sizes
    python -m bench.vector_bench --sizes 1000 10000   # a quick run
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import faiss
import numpy as np

from retrieval._vectors import build_vector_index

DIM = 384
QUERIES = 200
# HNSW construction at 1M on 2 cores takes far longer than the rest together; IVF covers that size.
KINDS_BY_SIZE = {1_000: ("flat", "hnsw", "ivf"), 10_000: ("flat", "hnsw", "ivf"),
                 100_000: ("flat", "hnsw", "ivf"), 1_000_000: ("flat", "ivf")}


def unit_vectors(n: int, rng: np.random.Generator) -> np.ndarray:
    x = rng.standard_normal((n, DIM), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def measure(base: np.ndarray, queries: np.ndarray, kind: str, planted: np.ndarray) -> dict:
    t0 = time.perf_counter()
    index = build_vector_index(base, kind)
    build_s = time.perf_counter() - t0
    nbytes = len(faiss.serialize_index(index))
    lat = []
    found = []
    for q in queries:
        t = time.perf_counter()
        _, ids = index.search(q[None, :], 10)
        lat.append((time.perf_counter() - t) * 1000)
        found.append(ids[0])
    # each query was made next to one stored vector, as a question is next to its answer: is it found?
    recall = float(np.mean([p in f for p, f in zip(planted, found)]))
    recall1 = float(np.mean([p == f[0] for p, f in zip(planted, found)]))
    return {"kind": kind, "n": len(base), "build_s": round(build_s, 2), "p50_ms": round(float(np.percentile(lat, 50)), 3),
            "p95_ms": round(float(np.percentile(lat, 95)), 3), "index_mb": round(nbytes / 2**20, 1),
            "recall_at_1": round(recall1, 3), "recall_at_10": round(recall, 3)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="*", default=list(KINDS_BY_SIZE))
    parser.add_argument("--out", type=Path, default=Path("bench/results/vector_bench.json"))
    args = parser.parse_args()
    faiss.omp_set_num_threads(1)  # batch-1 latency as a request sees it
    rng = np.random.default_rng(0)
    rows = []
    for n in args.sizes:
        base = unit_vectors(n, rng)
        # queries near stored vectors, as real questions are near their answers
        planted = rng.integers(0, n, QUERIES)
        queries = base[planted] + 0.05 * unit_vectors(QUERIES, rng)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        flat_p50 = None
        for kind in KINDS_BY_SIZE.get(n, ("flat", "ivf")):
            row = measure(base, queries, kind, planted)
            flat_p50 = row["p50_ms"] if kind == "flat" else flat_p50
            if flat_p50:
                row["p50_ratio_vs_flat"] = round(row["p50_ms"] / flat_p50, 3)
            row["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
            rows.append(row)
            print(json.dumps(row), flush=True)
        del base
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
