"""Shared fixtures. Heavy artifacts (embedding model, embeddings) come from the machine cache that
`make setup` fills; indexes built by tests go to a temporary folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"the shared data folder {SHARED} is missing (it is laid beside the checkout)")
    return SHARED


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from retrieval import Settings

    return Settings(index_dir=tmp_path_factory.mktemp("indexes"))


@pytest.fixture(scope="session")
def kb(settings):  # type: ignore[no-untyped-def]
    """The knowledge service over the bundled corpus, index built fresh for this test session."""
    from retrieval import KnowledgeService, build_corpus_index

    build_corpus_index(settings)
    return KnowledgeService(settings)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


# Gateway fixtures (knowledge copy, Rasa stack, PostgreSQL databases, gateway processes).
from tests.gateway_fixtures import bot_stack, gateway, kb_copy, rasa_model  # noqa: E402,F401
