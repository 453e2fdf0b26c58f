"""Chinese text for govbot: normalisation, the jieba government dictionary, aspect cues.

Pure Python with light dependencies: it runs inside Rasa (Python 3.10) and in the app (3.11).
"""

from .aspects import detect_aspect
from .dictionary import dictionary_terms, dictionary_text, make_tokenizer, write_dictionary
from .normalize import normalize, normalize_aligned

__all__ = [
    "detect_aspect", "dictionary_terms", "dictionary_text", "make_tokenizer", "normalize", "normalize_aligned", "write_dictionary",
]
