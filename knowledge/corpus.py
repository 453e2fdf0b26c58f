"""A knowledge base folder: guides/*.md, faq/*.{jsonl,csv,xlsx}, policies/*.md."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .faq import load_faq
from .guides import load_guide
from .policies import load_policy
from .schema import FaqEntry, Guide, PolicySection, Problem

FAQ_SUFFIXES = (".jsonl", ".csv", ".xlsx")


@dataclass
class Corpus:
    root: Path
    guides: dict[str, Guide] = field(default_factory=dict)
    faq: list[FaqEntry] = field(default_factory=list)  # guide-body FAQ and faq/ files together
    policies: list[PolicySection] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    def content_hash(self) -> str:
        """Hash of every input file, so built artifacts can be versioned by what they were built from."""
        h = hashlib.sha256()
        for path in sorted(self.files):
            h.update(str(path.relative_to(self.root)).encode())
            h.update(hashlib.sha256(path.read_bytes()).digest())
        return h.hexdigest()


def corpus_files(root: Path) -> list[Path]:
    files = sorted((root / "guides").glob("*.md")) + sorted((root / "policies").glob("*.md"))
    files += sorted(p for p in (root / "faq").glob("*") if p.suffix.lower() in FAQ_SUFFIXES)
    return files


def load_corpus(
    root: Path, progress: Optional[Callable[[Path], None]] = None
) -> tuple[Corpus, list[Problem]]:
    """Load everything under `root` and check it as a whole. Returns every problem; never stops at the first."""
    corpus = Corpus(root=root)
    problems: list[Problem] = []
    if not root.is_dir():
        return corpus, [Problem(str(root), 0, "", "知识库目录不存在")]
    corpus.files = corpus_files(root)
    if not any(p.parent.name == "guides" for p in corpus.files):
        problems.append(Problem(str(root / "guides"), 0, "", "没有找到任何办事指南（guides/*.md）"))
    alias_owner: dict[str, str] = {}
    for path in corpus.files:
        if progress:
            progress(path)
        kind = path.parent.name
        if kind == "guides":
            guide, found = load_guide(path)
            problems += found
            if guide is None or not guide.id:
                continue
            if guide.id in corpus.guides:
                problems.append(Problem(str(path), 2, "id", f"与 {corpus.guides[guide.id].path} 的 id 重复"))
                continue
            corpus.guides[guide.id] = guide
            for alias in (guide.name, *guide.aliases):
                other = alias_owner.setdefault(alias, guide.id)
                if other != guide.id:
                    problems.append(Problem(str(path), 0, "aliases", f"“{alias}”同时是 {other} 的名称或别名"))
            corpus.faq.extend(guide.faq)
        elif kind == "faq":
            entries, found = load_faq(path)
            problems += found
            corpus.faq.extend(entries)
        else:
            sections, found = load_policy(path)
            problems += found
            corpus.policies.extend(sections)
    seen: dict[str, str] = {}
    for entry in corpus.faq:
        if entry.id in seen:
            problems.append(Problem(entry.source, 0, "id", f"FAQ id“{entry.id}”重复（另见 {seen[entry.id]}）"))
        seen[entry.id] = entry.source
        if entry.service and entry.service not in corpus.guides:
            problems.append(Problem(entry.source, 0, "service", f"关联的办事指南“{entry.service}”不存在"))
    return corpus, problems
