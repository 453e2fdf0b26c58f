"""The FAISS index: inner product on normalised vectors (= cosine); the type follows the size."""

from __future__ import annotations

import math
from pathlib import Path

import faiss
import numpy as np

# Exact search is fast enough below this many vectors (see bench/README.md); above it, approximate.
FLAT_LIMIT = 50_000


def choose_kind(n: int, kind: str = "auto") -> str:
    if kind != "auto":
        return kind
    return "flat" if n < FLAT_LIMIT else "hnsw"


def build_vector_index(vectors: np.ndarray, kind: str = "auto") -> faiss.Index:
    n, dim = vectors.shape
    kind = choose_kind(n, kind)
    index: faiss.Index
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        hnsw = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = 80
        hnsw.hnsw.efSearch = 128
        index = hnsw
    elif kind == "ivf":
        nlist = max(1, min(int(math.sqrt(n)), n // 39 or 1))  # k-means training cost grows with nlist
        ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.train(vectors)
        ivf.nprobe = max(8, nlist // 8)
        index = ivf
    else:
        raise ValueError(f"unknown index kind {kind!r} (flat, hnsw, ivf, auto)")
    if n:
        index.add(vectors)
    return index


def save_vector_index(index: faiss.Index, path: Path) -> None:
    faiss.write_index(index, str(path))


def load_vector_index(path: Path) -> faiss.Index:
    index = faiss.read_index(str(path))
    if isinstance(index, faiss.IndexHNSWFlat):
        index.hnsw.efSearch = 128
    if isinstance(index, faiss.IndexIVF):
        index.make_direct_map()  # reconstruct() is used to explain which entry matched
    return index
