"""Hybrid retrieval over the bundled corpus with the real embedding model."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from knowledge import BUNDLED_CORPUS
from retrieval import CorpusError, KnowledgeService, Retriever, build_corpus_index
from retrieval._index import chunk
from retrieval._vectors import build_vector_index, choose_kind

pytestmark = pytest.mark.model


def test_lost_id_card_gets_the_reissue_checklist_with_citation(kb: KnowledgeService) -> None:
    result = kb.answer("身份证丢了怎么补办")
    assert result.decision == "answer"
    assert result.hits[0].doc_id == "id-card-reissue"
    materials = next(c for c in result.cards if c["aspect"] == "materials")
    assert any("居民户口簿" in item and "原件" in item for item in materials["items"])
    assert materials["source"]["guide"] == "id-card-reissue" and materials["source"]["updated"]
    assert "居民身份证法" in materials["source"]["basis"]


def test_traditional_characters_get_the_same_answer(kb: KnowledgeService) -> None:
    simplified = kb.answer("身份证丢了怎么补办")
    traditional = kb.answer("身份證丟了怎麼補辦")
    assert traditional.decision == simplified.decision
    assert traditional.cards == simplified.cards


@pytest.mark.parametrize(
    ("question", "service", "aspect"),
    [
        ("给孩子上户口要带什么材料", "hukou-newborn", "materials"),
        ("公积金租房提取要多久", "housing-fund-rent-withdrawal", "time_limit"),
        ("办护照多少钱", "passport", "fee"),
        ("驾照到期了怎么换", "driving-license-renew", None),
        ("异地就医怎么备案", "medical-cross-region-filing", None),
    ],
)
def test_common_questions_find_their_service(kb: KnowledgeService, question: str, service: str,
                                             aspect: str | None) -> None:
    hits = kb.search(question, k=5)
    assert service in [h.doc_id for h in hits[:3]], [(h.doc_id, round(h.confidence, 2)) for h in hits]
    result = kb.answer(question)
    assert result.aspect == aspect
    if result.decision == "answer":
        assert result.hits[0].doc_id == service


def test_answers_are_extractive(kb: KnowledgeService) -> None:
    """Every card line comes from the knowledge base: no invented text."""
    corpus = kb.retriever.data.corpus
    assert corpus is not None
    result = kb.answer("补办身份证要多少钱", aspect="fee", service="id-card-reissue")
    assert result.decision == "answer"
    guide = corpus.guides[result.hits[0].doc_id]
    for item in result.cards[0]["items"]:
        assert any(f.amount in item and f.item in item for f in guide.fee.items) or item == "不收费"


def test_situation_personalises_the_checklist(kb: KnowledgeService) -> None:
    # in a conversation the service is already known (a slot) when the 情形 question is answered
    adult = kb.answer("要带什么", service="id-card-reissue", situation="adult").cards[0]["items"]
    minor = kb.answer("要带什么", service="id-card-reissue", situation="minor").cards[0]["items"]
    assert len(minor) > len(adult)
    assert any("监护人" in m for m in minor) and not any("监护人" in a for a in adult)


@pytest.mark.parametrize("question", ["冰壶比赛的规则是什么", "明天北京会下雨吗", "帮我写一首关于月亮的诗"])
def test_unknown_questions_are_handed_off(kb: KnowledgeService, question: str) -> None:
    result = kb.answer(question)
    assert result.decision == "handoff", [(h.doc_id, h.confidence) for h in result.hits[:3]]
    assert result.cards == []


def test_plausible_but_unproven_match_clarifies(kb: KnowledgeService) -> None:
    result = kb.answer("身份证补办要带什么材料")
    assert result.decision in ("answer", "clarify")
    assert result.hits[0].doc_id == "id-card-reissue"


def test_hits_resolve_entries_to_guide_and_field(kb: KnowledgeService) -> None:
    hits = kb.search("身份证丢了需要先登报声明作废吗", k=3)
    assert hits[0].doc_id == "id-card-reissue" and hits[0].field == "faq" and hits[0].ref
    hit = kb.search("补领身份证要带什么材料", aspect="materials", k=1)[0]
    assert hit.field == "materials" and "居民户口簿" in hit.text
    only = kb.search("身份证", service="passport", k=5)
    assert {h.doc_id for h in only} <= {"passport"}


def test_failed_build_keeps_the_previous_index(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    good, _ = build_corpus_index(settings, name="atomic")
    current = settings.index_root / "atomic" / "current"
    assert current.resolve() == good
    broken = tmp_path / "kb"
    shutil.copytree(BUNDLED_CORPUS, broken)
    path = broken / "guides" / "passport.md"
    path.write_text(path.read_text(encoding="utf-8").replace("visits:", "visits: 九\nx_visits:"), encoding="utf-8")
    with pytest.raises(CorpusError) as info:
        build_corpus_index(settings, corpus_dir=broken, name="atomic")
    assert any("passport.md" in str(p) for p in info.value.problems)
    assert current.resolve() == good
    assert not [p for p in (settings.index_root / "atomic").iterdir() if ".tmp-" in p.name]


def test_reload_without_restart(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    build_corpus_index(settings, name="reload")
    retriever = Retriever(settings.index_root / "reload" / "current", KnowledgeService(settings).embedder)
    assert not retriever.reload()
    extra = tmp_path / "kb"
    shutil.copytree(BUNDLED_CORPUS, extra)
    (extra / "faq" / "new.jsonl").write_text(
        '{"id": "new-1", "question": "市民卡挂失电话是多少", "answer": "市民卡挂失请拨打12345转市民卡中心。"}\n',
        encoding="utf-8",
    )
    build_corpus_index(settings, corpus_dir=extra, name="reload")
    assert retriever.reload()
    assert retriever.search("市民卡挂失打什么电话", k=1)[0].doc_id == "new-1"


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_vector_index_kinds_agree_on_clear_neighbours(kind: str) -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=(2000, 64)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    index = build_vector_index(base, kind)
    _, ids = index.search(base[:50], 1)
    assert (ids[:, 0] == np.arange(50)).mean() >= 0.9
    assert choose_kind(1000) == "flat" and choose_kind(2_000_000) == "hnsw"


def test_chunking_keeps_every_character() -> None:
    text = "第一句话。" * 100 + "没有句号的很长一段" * 50
    pieces = chunk(text, 120)
    assert all(len(p) <= 120 for p in pieces)
    assert "".join(pieces) == text
