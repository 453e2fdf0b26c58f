"""Which service guide a message names: the linking rule behind the Rasa `ServiceLinker` component.

Pure Python (no Rasa), so it is testable in both runtimes. The term table (surface form → guide ids, plus the
"weak" terms that are also material names) is generated from the knowledge base by bot/generate.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Optional

from .normalize import normalize, normalize_aligned

# A mention right after one of these is what the citizen does *not* mean: 「不是护照，是港澳通行证」.
_NEGATIONS = ("不是", "并非", "不要", "不办", "而非")


class ServiceIndex:
    """Surface forms → guide ids, and the rule that picks one guide for a message."""

    def __init__(self, terms: dict[str, list[str]], weak: Iterable[str] = ()) -> None:
        self.terms = {normalize(t): sorted(ids) for t, ids in terms.items() if t and ids}
        self.weak = {normalize(t) for t in weak}
        self._by_first: dict[str, list[str]] = {}
        for term in sorted(self.terms, key=len, reverse=True):
            self._by_first.setdefault(term[0], []).append(term)

    def matches(self, text: str) -> list[tuple[int, int, str]]:
        """Every (start, end, term) occurrence in the (already normalised) text, overlaps included."""
        found = []
        for i, ch in enumerate(text):
            for term in self._by_first.get(ch, ()):
                if text.startswith(term, i):
                    found.append((i, i + len(term), term))
        return found

    def link(self, text: str) -> tuple[Optional[str], Optional[tuple[int, int]], list[str]]:
        """(guide id, span of the deciding mention, candidates).

        A guide is linked only through a term that names exactly one guide. Among those the longest wins;
        terms that are also material names (「结婚证」 in 「上户口要带结婚证吗」) count only when nothing else
        matches, and mentions right after a negation (「不是护照」) only when nothing else does. Two different
        guides tied at the top, or only ambiguous mentions (「身份证」: four guides), give no link; then
        `candidates` lists the guides it may be (best guess first is not implied: sorted ids).
        """
        text = normalize_aligned(text).lower()
        found = self.matches(text)
        if not found:
            return None, None, []

        def negated(m: tuple[int, int, str]) -> bool:
            return any(text[max(0, m[0] - len(n)):m[0]] == n for n in _NEGATIONS)

        unique = [m for m in found if len(self.terms[m[2]]) == 1]
        if unique:
            def rank(m: tuple[int, int, str]) -> tuple[bool, bool, int]:
                return (negated(m), m[2] in self.weak, -(m[1] - m[0]))

            best = min(rank(m) for m in unique)
            top = [m for m in unique if rank(m) == best]
            ids = sorted({self.terms[m[2]][0] for m in top})
            if len(ids) == 1:
                first = min(top, key=lambda m: m[0])
                return ids[0], (first[0], first[1]), []
            return None, None, ids
        longest = max(found, key=lambda m: (not negated(m), m[1] - m[0], -m[0]))
        return None, None, list(self.terms[longest[2]])
