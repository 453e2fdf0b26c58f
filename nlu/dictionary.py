"""The government dictionary for jieba, generated from the knowledge base.

Service names, aliases, departments and material names become user-dictionary words, so that
「居民户口簿」 or 「公积金」 stay one token for BM25 here and for Rasa's JiebaTokenizer.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

import jieba

from .normalize import normalize

# High enough that jieba keeps the whole term, low enough not to swallow neighbouring words.
_FREQ = 20000
_SPLIT = re.compile(r"[（）()、，,；;：:/\s]+")


def dictionary_terms(names: Iterable[str]) -> list[str]:
    """Clean, normalised, de-duplicated terms (2-12 characters) from names and aliases."""
    terms: set[str] = set()
    for name in names:
        for part in _SPLIT.split(normalize(name)):
            if 2 <= len(part) <= 12:
                terms.add(part)
    return sorted(terms)


def dictionary_text(terms: Iterable[str]) -> str:
    """A jieba user dictionary: `word freq tag` per line."""
    return "".join(f"{term} {_FREQ} nz\n" for term in terms if " " not in term)


def write_dictionary(terms: Iterable[str], path: Path) -> Path:
    """Write a jieba user dictionary atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".dict-")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(dictionary_text(terms))
    os.replace(tmp, path)
    return path


def make_tokenizer(dictionary: Path | None = None, cache_dir: Path | None = None) -> jieba.Tokenizer:
    """A private jieba tokenizer with the government dictionary (never the global one)."""
    tokenizer = jieba.Tokenizer()
    # jieba caches its prefix dictionary in the system temp folder unless told otherwise.
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tokenizer.tmp_dir = str(cache_dir)
    jieba.setLogLevel(60)
    tokenizer.initialize()
    if dictionary is not None and dictionary.exists():
        tokenizer.load_userdict(str(dictionary))
    return tokenizer
