"""Text normalisation applied to documents and queries alike.

繁體→简体, full-width→half-width, unified spacing. `normalize_aligned` keeps the text length, so a Rasa
component can rewrite messages without moving entity offsets.
"""

from __future__ import annotations

import re
from functools import lru_cache

from opencc import OpenCC

_T2S = OpenCC("t2s")
_SPACES = re.compile(r"\s+")


def _half_width_char(ch: str) -> str:
    code = ord(ch)
    if code == 0x3000:
        return " "
    if 0xFF01 <= code <= 0xFF5E:
        return chr(code - 0xFEE0)
    return ch


@lru_cache(maxsize=65536)
def _simplified_char(ch: str) -> str:
    out: str = _T2S.convert(ch)
    return out if len(out) == 1 else ch


def normalize_aligned(text: str) -> str:
    """Character-for-character normalisation: same length as the input, offsets stay valid."""
    return "".join(_simplified_char(_half_width_char(ch)) for ch in text)


def normalize(text: str) -> str:
    """Canonical form for matching: simplified, half-width, lower-case Latin, single spaces, trimmed."""
    text = _T2S.convert(text)  # phrase-level conversion is more accurate than per character
    text = "".join(_half_width_char(ch) for ch in text)
    return _SPACES.sub(" ", text).strip().lower()
