"""`python -m retrieval.setup model`: build the default embedding model into the cache if missing."""

from __future__ import annotations

import sys

from ._embedder import default_model_dir, ensure_default_model
from .settings import get_settings


def main(argv: list[str]) -> int:
    if argv != ["model"]:
        print("usage: python -m retrieval.setup model", file=sys.stderr)
        return 2
    settings = get_settings()
    if settings.embedding_model:
        print(f"embedding model: {settings.embedding_model} (configured)")
        return 0
    target = default_model_dir(settings)
    if not (target / "modules.json").exists():
        print(f"setup: building the embedding model into {target} (once per machine)")
        ensure_default_model(settings, lambda msg: print(f"  {msg}", flush=True))
    print(f"embedding model: {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
