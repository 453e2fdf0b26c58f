"""Policy documents in Markdown, split into articles (第X条) or sections (## headings)."""

from __future__ import annotations

import datetime as _dt
import re
from pathlib import Path

from ._frontmatter import FrontMatterError, parse_located, split_front_matter
from .schema import PolicySection, Problem

_ARTICLE_START = re.compile(r"^(第[零一二三四五六七八九十百千]+条(?:之[一二三四五六七八九十]+)?)[\s　]+")
_DATE_IN_NAME = re.compile(r"\((\d{4}-\d{2}-\d{2})\)")


def parse_policy_text(text: str, path: str) -> tuple[list[PolicySection], list[Problem]]:
    """Split one document. Two shapes are understood:

    - ours: YAML front matter (id, title, date, source) then `## ` sections;
    - a law text: `# 标题`, meta lines, `<!-- INFO END -->`, `## 第一章 …` headings and `第一条 …` paragraphs.
    """
    meta: dict[str, str] = {}
    body = text
    if text.startswith("---"):
        try:
            yaml_text, body, _ = split_front_matter(text)
            root = parse_located(yaml_text)
        except FrontMatterError as exc:
            return [], [Problem(path, exc.line, "", exc.message)]
        if isinstance(root.value, dict):
            meta = {k: str(v.value) for k, v in root.value.items() if v.value is not None}
        for key in ("id", "title", "date"):
            if not meta.get(key):
                return [], [Problem(path, root.line, key, "政策文件缺少必填字段")]
    stem = Path(path).stem
    title = meta.get("title", "")
    if not title:
        m = re.search(r"^# (.+)$", body, flags=re.M)
        title = m.group(1).strip() if m else stem
    date = meta.get("date", "")
    if not date:
        m = _DATE_IN_NAME.search(stem)
        date = m.group(1) if m else ""
    if date:
        try:
            date = _dt.date.fromisoformat(date[:10]).isoformat()
        except ValueError:
            return [], [Problem(path, 0, "date", "应为日期，格式 YYYY-MM-DD")]
    doc_id = meta.get("id") or stem
    if "<!-- INFO END -->" in body:
        body = body.split("<!-- INFO END -->", 1)[1]

    sections: list[PolicySection] = []
    heading = ""
    article = ""
    buffer: list[str] = []

    def flush() -> None:
        text_ = "\n".join(x for x in buffer if x).strip()
        if text_:
            label = " ".join(x for x in (heading, article) if x)
            sections.append(
                PolicySection(f"{doc_id}#{len(sections) + 1}", doc_id, title, label, text_, date, meta.get("source", ""))
            )
        buffer.clear()

    for raw in body.splitlines():
        line = raw.strip()
        if line.startswith("# ") and not line.startswith("## "):
            continue
        if line.startswith("#"):
            flush()
            heading, article = line.lstrip("#").strip(), ""
            continue
        m = _ARTICLE_START.match(line)
        if m:
            flush()
            article = m.group(1)
            buffer.append(line[m.end() :])
            continue
        buffer.append(line)
    flush()
    if not sections:
        return [], [Problem(path, 0, "", "文件中没有正文内容")]
    return sections, []


def load_policy(path: Path) -> tuple[list[PolicySection], list[Problem]]:
    return parse_policy_text(path.read_text(encoding="utf-8"), str(path))
