"""The knowledge base: service guides, FAQ and policy documents, their loaders and validation."""

from .corpus import Corpus, load_corpus
from .faq import load_faq
from .guides import load_guide, parse_guide_text
from .policies import load_policy, parse_policy_text
from .schema import (
    ASPECT_LABELS,
    ASPECTS,
    Basis,
    FaqEntry,
    Guide,
    Material,
    PolicySection,
    Problem,
    Situation,
)

BUNDLED_CORPUS = __import__("pathlib").Path(__file__).parent / "corpus"

__all__ = [
    "ASPECTS", "ASPECT_LABELS", "BUNDLED_CORPUS", "Basis", "Corpus", "FaqEntry", "Guide", "Material",
    "PolicySection", "Problem", "Situation", "load_corpus", "load_faq", "load_guide", "load_policy",
    "parse_guide_text", "parse_policy_text",
]
