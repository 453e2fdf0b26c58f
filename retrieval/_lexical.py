"""BM25 over jieba tokens (with the government dictionary) and over character n-grams, each one sparse
matrix product per query."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import jieba
import numpy as np
from scipy import sparse

from nlu import normalize

_KEEP = re.compile(r"[\w]", re.UNICODE)
# Function words that only add noise to lexical matching of questions.
_STOP = frozenset(
    "的 了 吗 呢 吧 啊 呀 么 是 在 和 与 及 或 我 你 他 她 要 想 请问 怎么 怎么样 如何 什么 哪些 可以 能 需要 办理 一下 有 没有 这个 那个 就".split()
)


class Tokens:
    def __init__(self, tokenizer: jieba.Tokenizer) -> None:
        self.tokenizer = tokenizer

    def __call__(self, text: str) -> list[str]:
        # search mode also emits the dictionary words inside a long term (驾照到期换证 → 驾照, 到期, 换证),
        # so a dictionary of whole names and aliases does not hide their parts from lexical matching
        words = self.tokenizer.lcut_for_search(normalize(text))
        return [w for w in (x.strip() for x in words) if w and _KEEP.search(w) and w not in _STOP]


def char_grams(text: str) -> list[str]:
    """Character unigrams and bigrams of the normalised text (CJK and alphanumerics only).

    Robust where word segmentation is not: typos, colloquial compounds, names jieba splits differently."""
    chars = [c for c in normalize(text) if _KEEP.match(c)]
    return [c for c in chars if c not in _STOP] + [a + b for a, b in zip(chars, chars[1:])]


class BM25:
    def __init__(self, vocab: dict[str, int], weights: sparse.csr_matrix) -> None:
        self.vocab = vocab
        self.weights = weights  # entries × vocab, BM25 term weights

    @classmethod
    def build(cls, docs: Sequence[list[str]], k1: float = 1.2, b: float = 0.75) -> BM25:
        vocab: dict[str, int] = {}
        rows, cols, vals = [], [], []
        for i, doc in enumerate(docs):
            counts: dict[int, int] = {}
            for tok in doc:
                j = vocab.setdefault(tok, len(vocab))
                counts[j] = counts.get(j, 0) + 1
            for j, c in counts.items():
                rows.append(i)
                cols.append(j)
                vals.append(c)
        n = len(docs)
        tf = sparse.csr_matrix((np.array(vals, dtype=np.float32), (rows, cols)), shape=(n, max(len(vocab), 1)))
        lengths = np.array([len(d) for d in docs], dtype=np.float32)
        avg = float(lengths.mean()) if n else 1.0
        df = np.bincount(tf.indices, minlength=tf.shape[1]).astype(np.float32)
        idf = np.log(1.0 + (n - df + 0.5) / (df + 0.5)).astype(np.float32)
        tf = tf.tocoo()
        denom = tf.data + k1 * (1 - b + b * lengths[tf.row] / max(avg, 1e-6))
        data = idf[tf.col] * tf.data * (k1 + 1) / denom
        return cls(vocab, sparse.csr_matrix((data.astype(np.float32), (tf.row, tf.col)), shape=tf.shape))

    def scores(self, query_tokens: list[str]) -> np.ndarray:
        q = np.zeros(self.weights.shape[1], dtype=np.float32)
        for tok in query_tokens:
            j = self.vocab.get(tok)
            if j is not None:
                q[j] += 1.0
        return np.asarray(self.weights @ q).ravel()

    def save(self, folder: Path, name: str = "bm25") -> None:
        sparse.save_npz(folder / f"{name}.npz", self.weights)
        (folder / f"{name}_vocab.json").write_text(json.dumps(self.vocab, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path, name: str = "bm25") -> BM25:
        vocab = json.loads((folder / f"{name}_vocab.json").read_text(encoding="utf-8"))
        return cls(vocab, sparse.load_npz(folder / f"{name}.npz").tocsr())
