"""Index artifacts: what gets indexed (units and entries), and the versioned folder that holds it.

A *unit* is what search returns: a service guide, a stand-alone FAQ answer, or a policy section.
An *entry* is one indexed text of a unit: a guide's name, each alias, each field, each linked FAQ
question; an answer chunk; a policy article. Every entry resolves to its unit and field.

An index is a folder named by the hash of its inputs, with a manifest; it is written to a temporary
folder and renamed into place, and `current` is a symlink swapped atomically, so a failed build leaves
the previous index serving.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from knowledge import ASPECT_LABELS, Corpus, FaqEntry, load_corpus
from nlu import dictionary_terms, make_tokenizer, normalize, write_dictionary

from ._embedder import Embedder
from ._lexical import BM25, Tokens, char_grams
from ._vectors import build_vector_index, choose_kind, load_vector_index, save_vector_index
from .answers import field_text

INDEX_FORMAT = 3  # bump when what goes into an index changes (tokenisation, entries), to rebuild
GUIDE_FIELDS = ("materials", "procedure", "fee", "time_limit", "location", "conditions", "online", "basis", "overview")
_SENTENCE_END = re.compile(r"(?<=[。！？；;!?\n])")


@dataclass
class Unit:
    id: str
    kind: str  # guide | faq | policy
    title: str
    service: Optional[str] = None
    text: str = ""  # the answer itself for faq and policy units
    meta: dict[str, str] = field(default_factory=dict)


@dataclass
class Entry:
    unit: int
    field: str  # name | alias | faq | answer | policy | one of GUIDE_FIELDS
    text: str
    kind: str  # query (question-like, short) | passage
    ref: str = ""  # FAQ id for a linked FAQ question


def chunk(text: str, max_chars: int) -> list[str]:
    """Split on sentence ends into pieces of at most ~max_chars (a sentence longer than that is cut)."""
    pieces: list[str] = []
    current = ""
    for sentence in _SENTENCE_END.split(text):
        while len(sentence) > max_chars:
            if current:
                pieces.append(current)
                current = ""
            pieces.append(sentence[:max_chars])
            sentence = sentence[max_chars:]
        if len(current) + len(sentence) > max_chars and current:
            pieces.append(current)
            current = ""
        current += sentence
    if current.strip():
        pieces.append(current)
    return [p.strip() for p in pieces if p.strip()]


def corpus_units(corpus: Corpus, max_chars: int) -> tuple[list[Unit], list[Entry]]:
    units: list[Unit] = []
    entries: list[Entry] = []
    faq_by_service: dict[str, list[FaqEntry]] = {}
    for entry in corpus.faq:
        if entry.service:
            faq_by_service.setdefault(entry.service, []).append(entry)
    for guide in corpus.guides.values():
        u = len(units)
        units.append(Unit(guide.id, "guide", guide.name, guide.id, meta={"region": guide.region}))
        entries.append(Entry(u, "name", guide.name, "query"))
        entries.extend(Entry(u, "alias", alias, "query") for alias in guide.aliases)
        for aspect in GUIDE_FIELDS:
            text = field_text(guide, aspect)
            for piece in chunk(text, max_chars):
                entries.append(Entry(u, aspect, f"{guide.name} {ASPECT_LABELS[aspect]}：{piece}", "passage"))
        for faq in faq_by_service.get(guide.id, []):
            entries.append(Entry(u, "faq", faq.question, "query", ref=faq.id))
    units_faq, entries_faq = faq_units([f for f in corpus.faq if not f.service], max_chars, offset=len(units))
    units += units_faq
    entries += entries_faq
    for section in corpus.policies:
        u = len(units)
        units.append(
            Unit(section.id, "policy", f"{section.title} {section.heading}".strip(), text=section.text,
                 meta={"date": section.date, "source": section.source, "doc": section.doc_id})
        )
        for piece in chunk(section.text, max_chars):
            entries.append(Entry(u, "policy", f"{section.title} {section.heading}：{piece}", "passage"))
    return units, entries


def faq_units(faq: Iterable[FaqEntry], max_chars: int, offset: int = 0) -> tuple[list[Unit], list[Entry]]:
    units: list[Unit] = []
    entries: list[Entry] = []
    for item in faq:
        u = offset + len(units)
        units.append(Unit(item.id, "faq", item.question or item.id, text=item.answer,
                          meta={"department": item.department, "source": item.source}))
        if item.question:
            entries.append(Entry(u, "faq", item.question, "query", ref=item.id))
        entries.extend(Entry(u, "answer", piece, "passage") for piece in chunk(item.answer, max_chars))
    return units, entries


@dataclass
class IndexData:
    folder: Path
    manifest: dict
    units: list[Unit]
    entries: list[Entry]
    entry_unit: np.ndarray
    entry_is_query: np.ndarray
    vectors: Any  # faiss.Index
    bm25: BM25  # over jieba words
    bm25_chars: BM25  # over character uni- and bigrams
    tokens: Tokens
    corpus: Optional[Corpus]
    unit_index: dict[str, int] = field(default_factory=dict)  # unit id -> position

    def __post_init__(self) -> None:
        self.unit_index = {u.id: i for i, u in enumerate(self.units)}


def inputs_hash(units: list[Unit], entries: list[Entry], embedder: Embedder, extra: str = "") -> str:
    h = hashlib.sha256(f"format={INDEX_FORMAT}\0model={embedder.fingerprint}\0{extra}".encode())
    for unit in units:
        h.update(json.dumps(asdict(unit), ensure_ascii=False, sort_keys=True).encode())
    for entry in entries:
        h.update(json.dumps(asdict(entry), ensure_ascii=False, sort_keys=True).encode())
    return h.hexdigest()


def build_index_folder(
    target: Path,
    units: list[Unit],
    entries: list[Entry],
    embedder: Embedder,
    dictionary_words: Iterable[str],
    index_kind: str = "auto",
    corpus_root: Optional[Path] = None,
    progress: Optional[Callable[[str, int, int], None]] = None,
) -> Path:
    """Write a complete index into `target` (which must not exist) via a temporary sibling folder."""
    started = time.time()
    if any(a.unit > b.unit for a, b in zip(entries, entries[1:])):
        raise ValueError("entries must be grouped by unit, in unit order")  # search relies on contiguous runs
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        dict_path = write_dictionary(dictionary_terms(dictionary_words), tmp / "dictionary.txt")
        tokens = Tokens(make_tokenizer(dict_path, tmp.parent / ".jieba"))
        texts = [normalize(e.text) for e in entries]
        vectors = np.zeros((len(entries), embedder.dim), dtype=np.float32)
        for kind in ("query", "passage"):
            idx = [i for i, e in enumerate(entries) if e.kind == kind]
            if idx:
                vectors[idx] = embedder.encode([texts[i] for i in idx], kind, progress=_stage(progress, f"embed {kind}"))
        save_vector_index(build_vector_index(vectors, index_kind), tmp / "dense.faiss")
        BM25.build([tokens(t) for t in texts]).save(tmp)
        BM25.build([char_grams(t) for t in texts]).save(tmp, "bm25_chars")
        with (tmp / "units.jsonl").open("w", encoding="utf-8") as fh:
            for unit in units:
                fh.write(json.dumps(asdict(unit), ensure_ascii=False) + "\n")
        with (tmp / "entries.jsonl").open("w", encoding="utf-8") as fh:
            for entry in entries:
                fh.write(json.dumps(asdict(entry), ensure_ascii=False) + "\n")
        if corpus_root is not None:
            shutil.copytree(corpus_root, tmp / "corpus", ignore=shutil.ignore_patterns(".*"))
        manifest = {
            "format": INDEX_FORMAT,
            "hash": target.name,
            "model": embedder.model_path,
            "model_fingerprint": embedder.fingerprint,
            "units": len(units),
            "entries": len(entries),
            "dim": int(vectors.shape[1]),
            "vector_index": choose_kind(len(entries), index_kind),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "build_seconds": round(time.time() - started, 2),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8")
        if target.exists():  # another process built the same inputs meanwhile
            shutil.rmtree(tmp)
        else:
            os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _stage(progress: Optional[Callable[[str, int, int], None]], name: str) -> Optional[Callable[[int, int], None]]:
    if progress is None:
        return None
    return lambda done, total: progress(name, done, total)


def load_index_folder(folder: Path) -> IndexData:
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    units = [Unit(**json.loads(line)) for line in (folder / "units.jsonl").open(encoding="utf-8")]
    entries = [Entry(**json.loads(line)) for line in (folder / "entries.jsonl").open(encoding="utf-8")]
    corpus = None
    if (folder / "corpus").is_dir():
        corpus, problems = load_corpus(folder / "corpus")
        if problems:
            raise RuntimeError(f"index {folder} holds an invalid corpus: {problems[0]}")
    return IndexData(
        folder=folder,
        manifest=manifest,
        units=units,
        entries=entries,
        entry_unit=np.array([e.unit for e in entries], dtype=np.int64),
        entry_is_query=np.array([e.kind == "query" for e in entries], dtype=bool),
        vectors=load_vector_index(folder / "dense.faiss"),
        bm25=BM25.load(folder),
        bm25_chars=BM25.load(folder, "bm25_chars"),
        tokens=Tokens(make_tokenizer(folder / "dictionary.txt", folder.parent / ".jieba")),
        corpus=corpus,
    )


def publish(name_dir: Path, version: Path) -> None:
    """Point `name_dir/current` at `version` atomically (symlink swap)."""
    link = name_dir / "current"
    tmp_link = name_dir / f".current-{os.getpid()}"
    if tmp_link.is_symlink() or tmp_link.exists():
        tmp_link.unlink()
    tmp_link.symlink_to(version.name)
    os.replace(tmp_link, link)


def corpus_dictionary_words(corpus: Corpus) -> list[str]:
    words: list[str] = []
    for guide in corpus.guides.values():
        words += [guide.name, *guide.aliases, guide.department, guide.category]
        words += [m.name for m in guide.materials]
    return words
