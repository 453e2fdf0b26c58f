"""`govbot eval faq`: index a FAQ knowledge base with the production pipeline and measure answers.

The output keys are a contract other checks depend on; keep them stable.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import numpy as np

from knowledge import FaqEntry, load_faq

from ._embedder import Embedder
from ._index import build_index_folder, faq_units
from ._scoring import Weights
from .search import Retriever
from .settings import Settings, get_settings

KB_COLUMNS = {"id": "id", "question": "question", "answer": "answer", "department": "department"}


class EvalInputError(ValueError):
    pass


def load_questions(path: Path) -> list[tuple[str, Optional[str]]]:
    if not path.is_file():
        raise EvalInputError(f"{path}: 文件不存在")
    out: list[tuple[str, Optional[str]]] = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise EvalInputError(f"{path}:{n}: 不是合法的 JSON（{exc.msg}）") from None
            if not isinstance(row, dict) or not isinstance(row.get("query"), str) or not row["query"].strip():
                raise EvalInputError(f"{path}:{n}: query: 缺少问题文本")
            expected = row.get("expected")
            if expected is not None and not isinstance(expected, (str, int)):
                raise EvalInputError(f"{path}:{n}: expected: 应为条目 id 或 null")
            out.append((row["query"], None if expected is None else str(expected)))
    if not out:
        raise EvalInputError(f"{path}: 没有问题")
    return out


def load_kb(path: Path) -> list[FaqEntry]:
    if not path.is_file():
        raise EvalInputError(f"{path}: 文件不存在")
    entries, problems = load_faq(path, KB_COLUMNS, require_question=False)
    if problems:
        raise EvalInputError("\n".join(str(p) for p in problems[:20]))
    if not entries:
        raise EvalInputError(f"{path}: 知识库为空")
    return entries


def drop_entries(kb: list[FaqEntry], questions: list[tuple[str, Optional[str]]], fraction: float,
                 seed: int) -> list[FaqEntry]:
    """Remove `fraction` of the KB entries that some question expects (those questions become unanswerable)."""
    expected = sorted({e for _, e in questions if e is not None} & {k.id for k in kb})
    dropped = set(random.Random(seed).sample(expected, round(len(expected) * fraction)))
    return [k for k in kb if k.id not in dropped]


def temporary_retriever(kb: list[FaqEntry], settings: Settings, workdir: Path,
                        progress: Optional[Callable[[str, int, int], None]] = None,
                        weights: Optional[Weights] = None) -> tuple[Retriever, float]:
    embedder = Embedder(settings)
    units, entries = faq_units(kb, settings.max_passage_chars)
    started = time.perf_counter()
    folder = build_index_folder(workdir / "index", units, entries, embedder,
                                [k.department for k in kb if k.department], settings.index_kind, progress=progress)
    build_s = time.perf_counter() - started
    return Retriever(folder, embedder, weights, threshold=settings.confidence_threshold), build_s


def evaluate_faq(kb_path: Path, questions_path: Path, drop_answerable: float = 0.0, seed: int = 0,
                 progress: Optional[Callable[[str, int, int], None]] = None,
                 settings: Optional[Settings] = None) -> dict[str, Any]:
    settings = settings or get_settings()
    kb = load_kb(kb_path)
    questions = load_questions(questions_path)
    if drop_answerable:
        kb = drop_entries(kb, questions, drop_answerable, seed)
    present = {k.id for k in kb}
    workdir = Path(tempfile.mkdtemp(prefix="eval-", dir=settings.cache_dir if settings.cache_dir.exists() else None))
    try:
        retriever, build_s = temporary_retriever(kb, settings, workdir, progress)
        return score(retriever, questions, present, build_s, progress)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def score(retriever: Retriever, questions: list[tuple[str, Optional[str]]], present: set[str], build_s: float,
          progress: Optional[Callable[[str, int, int], None]] = None) -> dict[str, Any]:
    r1 = r5 = mrr = 0.0
    answerable = answered = correct = wrong = handed = unans = unans_handed = unans_answered = 0
    latencies: list[float] = []
    for n, (query, expected) in enumerate(questions, start=1):
        t0 = time.perf_counter()
        hits = retriever.search(query, k=10)
        latencies.append((time.perf_counter() - t0) * 1000)
        ids = [h.doc_id for h in hits]
        gold = expected if expected in present else None
        if gold is not None:
            answerable += 1
            if gold in ids:
                rank = ids.index(gold) + 1
                r1 += rank == 1
                r5 += rank <= 5
                mrr += 1.0 / rank
        confident = bool(hits) and retriever.is_confident(hits[0])
        if gold is None:
            unans += 1
            unans_answered += confident
            unans_handed += not confident
        if confident:
            answered += 1
            if gold is not None and ids[0] == gold:
                correct += 1
            else:
                wrong += 1
        else:
            handed += 1
        if progress:
            progress("search", n, len(questions))
    d = max(answerable, 1)
    return {
        "n": len(questions),
        "recall_at_1": round(r1 / d, 4),
        "recall_at_5": round(r5 / d, 4),
        "mrr_at_10": round(mrr / d, 4),
        "answered": answered,
        "answered_correct": correct,
        "answered_wrong": wrong,
        "handed_off": handed,
        "unanswerable": unans,
        "unanswerable_handed_off": unans_handed,
        "unanswerable_answered": unans_answered,
        "latency_ms_p50": round(float(np.percentile(latencies, 50)), 2),
        "latency_ms_p95": round(float(np.percentile(latencies, 95)), 2),
        "index_build_s": round(build_s, 2),
    }
