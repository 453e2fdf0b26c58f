"""`python -m knowledge.validate DIR`: print every problem in a knowledge base; exit 1 if there is any.

The same check is `govbot kb validate`; this entry point also works inside the Rasa runtime.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .corpus import load_corpus


def main(argv: list[str]) -> int:
    root = Path(argv[0]) if argv else Path(__file__).parent / "corpus"
    corpus, problems = load_corpus(root)
    for problem in problems:
        print(problem)
    print(
        f"{len(corpus.guides)} 个办事指南，{len(corpus.faq)} 条常见问题，{len(corpus.policies)} 个政策条款；"
        f"{len(problems)} 个问题"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
