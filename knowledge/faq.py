"""FAQ loaders: JSONL, CSV and XLSX with a configurable column mapping."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Optional

from .schema import FaqEntry, Problem

# Our field -> the source column. Override per file, e.g. the Beijing FAQ export:
# {"question": "用户问题", "answer": "正文内容", "department": "处理单位"}
DEFAULT_COLUMNS: Mapping[str, str] = {
    "id": "id",
    "question": "question",
    "answer": "answer",
    "service": "service",
    "department": "department",
}


def _rows(path: Path) -> Iterator[tuple[int, object]]:
    """(line or row number, record) pairs; a record that can't be parsed is yielded as an error string."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        with path.open(encoding="utf-8") as fh:
            for n, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    yield n, json.loads(line)
                except json.JSONDecodeError as exc:
                    yield n, f"不是合法的 JSON：{exc.msg}"
    elif suffix == ".csv":
        with path.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            for row in reader:
                yield reader.line_num, row
    elif suffix == ".xlsx":
        from openpyxl import load_workbook  # app runtime only; not needed inside Rasa

        sheet = load_workbook(path, read_only=True, data_only=True).active
        rows = sheet.iter_rows(values_only=True)
        header = [str(c).strip() if c is not None else "" for c in next(rows, ())]
        for n, values in enumerate(rows, start=2):
            yield n, {h: v for h, v in zip(header, values) if h}
    else:
        raise ValueError(f"{path}: 不支持的 FAQ 文件格式（支持 .jsonl、.csv、.xlsx）")


def load_faq(
    path: Path, columns: Optional[Mapping[str, str]] = None, require_question: bool = True
) -> tuple[list[FaqEntry], list[Problem]]:
    """Read FAQ entries; rows missing a required field are reported, not silently dropped.

    `require_question=False` accepts answer-only entries (a knowledge base of official answers).
    """
    cols = {**DEFAULT_COLUMNS, **(columns or {})}
    entries: list[FaqEntry] = []
    problems: list[Problem] = []
    for n, record in _rows(path):
        if isinstance(record, str):
            problems.append(Problem(str(path), n, "", record))
            continue
        if not isinstance(record, dict):
            problems.append(Problem(str(path), n, "", "每行应为一个 JSON 对象"))
            continue

        def get(key: str, record: dict = record) -> str:
            value = record.get(cols[key])
            return "" if value is None else str(value).strip()

        question, answer = get("question"), get("answer")
        missing = [k for k, v in (("question", question), ("answer", answer)) if not v]
        if not require_question and "question" in missing:
            missing.remove("question")
        for key in missing:
            problems.append(Problem(str(path), n, cols[key], "缺少内容"))
        if not missing:
            entries.append(
                FaqEntry(
                    id=get("id") or f"{path.stem}-{n}",
                    question=question,
                    answer=answer,
                    service=get("service") or None,
                    department=get("department"),
                    source=f"{path.name}:{n}",
                )
            )
    return entries, problems
