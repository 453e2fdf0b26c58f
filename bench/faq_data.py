"""The Beijing government FAQ (../shared/data) as an evaluation set for `govbot eval faq`.

KB = the official answers only (duplicates merged); questions = the citizens' own questions, split
deterministically into dev (for tuning) and test (never tuned on).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
SOURCE = SHARED / "beijing_gov_faq.jsonl"
DEV_SHARE = 0.5


def split_of(question: str) -> str:
    h = int(hashlib.sha256(question.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "dev" if h < DEV_SHARE else "test"


def prepare(out_dir: Path, source: Path = SOURCE) -> dict[str, Path]:
    """Write kb.jsonl, questions-dev.jsonl, questions-test.jsonl, questions-all.jsonl into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    by_answer: dict[str, str] = {}
    kb: list[dict[str, str]] = []
    questions: dict[str, list[dict[str, str | None]]] = {"dev": [], "test": []}
    for n, line in enumerate(source.open(encoding="utf-8"), start=1):
        row = json.loads(line)
        answer, question = row["正文内容"].strip(), row["用户问题"].strip()
        if not answer:  # an official entry without an answer: its question has none in the KB
            questions[split_of(question)].append({"query": question, "expected": None})
            continue
        if answer not in by_answer:
            by_answer[answer] = f"bj-{n}"
            kb.append({"id": by_answer[answer], "answer": answer, "department": row.get("处理单位", "")})
        questions[split_of(question)].append({"query": question, "expected": by_answer[answer]})
    paths = {"kb": out_dir / "kb.jsonl"}
    _write(paths["kb"], list(kb))
    for name in ("dev", "test"):
        paths[name] = out_dir / f"questions-{name}.jsonl"
        _write(paths[name], questions[name])
    paths["all"] = out_dir / "questions-all.jsonl"
    _write(paths["all"], questions["dev"] + questions["test"])
    return paths


def _write(path: Path, rows: Sequence[Mapping[str, str | None]]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    for name, path in prepare(Path("var/eval")).items():
        print(name, path, sum(1 for _ in path.open()))
