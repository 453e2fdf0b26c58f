"""The knowledge base: bundled corpus, guide validation with file/line/field, FAQ and policy loaders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from openpyxl import Workbook

from knowledge import BUNDLED_CORPUS, load_corpus, load_faq, load_policy, parse_guide_text

from .conftest import write_jsonl

GUIDE = (BUNDLED_CORPUS / "guides" / "id-card-reissue.md").read_text(encoding="utf-8")


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), start=1) if needle in line)


def test_bundled_corpus_is_valid_and_covers_the_common_services() -> None:
    corpus, problems = load_corpus(BUNDLED_CORPUS)
    assert problems == []
    assert len(corpus.guides) >= 40
    for needed in ("身份证", "户口", "护照", "公积金", "社保卡", "驾驶证", "不动产", "低保", "结婚", "失业"):
        assert any(needed in g.name for g in corpus.guides.values()), needed
    linked = [f for f in corpus.faq if f.service]
    assert len(linked) >= 80
    assert corpus.policies, "policy documents are part of the bundled corpus"


def test_every_guide_states_fee_explicitly_and_has_materials() -> None:
    corpus, _ = load_corpus(BUNDLED_CORPUS)
    for guide in corpus.guides.values():
        assert guide.fee.free or guide.fee.items, guide.id
        assert guide.materials and guide.procedure and guide.basis, guide.id
        for m in guide.materials:
            assert all(s in {x.id for x in guide.situations} for s in m.applies_to)


def test_basis_cites_real_articles(shared_data: Path) -> None:
    """设定依据 must name articles that exist in the law texts (where we hold the law)."""
    articles: dict[str, set[str]] = {}
    for line in (shared_data / "laws" / "articles.jsonl").open(encoding="utf-8"):
        row = json.loads(line)
        articles.setdefault(row["law"], set()).add(row["article"])
    corpus, _ = load_corpus(BUNDLED_CORPUS)
    checked = 0
    for guide in corpus.guides.values():
        for basis in guide.basis:
            law = basis.law if basis.law in articles else f"中华人民共和国{basis.law}"
            if law in articles:
                assert basis.article in articles[law], f"{guide.id}: {basis.law}{basis.article} does not exist"
                checked += 1
    assert checked >= 40


@pytest.mark.parametrize(
    ("old", "new", "field", "anchor"),
    [
        ("    form: 原件\n    copies: 1\n    required: true\n    note: 户籍", "    form: 原本\n    copies: 1\n    required: true\n    note: 户籍", "materials[0].form", "form: 原本"),
        ("    copies: 1\n    required: true\n    applies_to: [minor]", "    copies: 一份\n    required: true\n    applies_to: [minor]", "materials[1].copies", "copies: 一份"),
        ("applies_to: [minor]", "applies_to: [child]", "materials[1].applies_to", "- name: 监护人居民身份证"),
        ("    article: 第十一条\n", "    article: 11\n", "basis[0].article", "article: 11"),
        ("updated: 2026-06-01", "updated: 六月", "updated", "updated: 六月"),
        ("  free: false\n", "  free: 否\n", "fee.free", "free: 否"),
        ("visits: 1\n", "visits: 1\nvisit_count: 2\n", "visit_count", "visit_count"),
    ],
)
def test_validation_names_file_line_and_field(old: str, new: str, field: str, anchor: str) -> None:
    assert old in GUIDE
    broken = GUIDE.replace(old, new, 1)
    _, problems = parse_guide_text(broken, "guides/id-card-reissue.md")
    assert problems, "the broken guide must be reported"
    match = [p for p in problems if p.field == field]
    assert match, [str(p) for p in problems]
    assert match[0].line == line_of(broken, anchor)
    assert str(match[0]).startswith(f"guides/id-card-reissue.md:{match[0].line}: {field}: ")


def test_missing_required_field_and_yaml_syntax_error_are_located() -> None:
    _, problems = parse_guide_text(GUIDE.replace("phone: \"12345\"\n", ""), "g/id-card-reissue.md")
    assert [p.field for p in problems] == ["phone"]
    broken = GUIDE.replace("category: 户籍与证件", "category: [户籍与证件")
    guide, problems = parse_guide_text(broken, "g/id-card-reissue.md")
    assert guide is None and problems[0].line >= line_of(broken, "category: [")
    _, problems = parse_guide_text("no front matter", "g/x.md")
    assert problems[0].line == 1


def test_corpus_level_checks(tmp_path: Path) -> None:
    shutil.copytree(BUNDLED_CORPUS, tmp_path / "kb")
    write_jsonl(tmp_path / "kb" / "faq" / "extra.jsonl", [
        {"id": "x-1", "service": "no-such-service", "question": "问？", "answer": "答。"},
        {"id": "x-2", "question": "", "answer": "答。"},
    ])
    _, problems = load_corpus(tmp_path / "kb")
    text = [str(p) for p in problems]
    assert any("extra.jsonl:1: service:" in t and "no-such-service" in t for t in text), text
    assert any("extra.jsonl:2: question:" in t for t in text), text


def test_faq_loader_with_column_mapping(shared_data: Path, tmp_path: Path) -> None:
    columns = {"question": "用户问题", "answer": "正文内容", "department": "处理单位"}
    entries, problems = load_faq(shared_data / "beijing_gov_faq.jsonl", columns)
    assert len(entries) + len(problems) >= 2081 - 1 and len(entries) > 2000
    assert all(p.field == "正文内容" for p in problems)  # rows with an empty answer are reported, not dropped silently
    assert entries[0].question == "震中求生的秘诀" and entries[0].department

    rows = [{"用户问题": e.question, "正文内容": e.answer, "处理单位": e.department} for e in entries[:5]]
    csv_path = tmp_path / "faq.csv"
    import csv

    with csv_path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    wb = Workbook()
    ws = wb.active
    ws.append(list(rows[0]))
    for r in rows:
        ws.append(list(r.values()))
    xlsx_path = tmp_path / "faq.xlsx"
    wb.save(xlsx_path)
    for path in (csv_path, xlsx_path):
        loaded, problems = load_faq(path, columns)
        assert problems == []
        assert [(e.question, e.answer) for e in loaded] == [(e.question, e.answer) for e in entries[:5]]


def test_policy_loader_splits_law_texts_into_articles(shared_data: Path) -> None:
    expected: dict[str, int] = {}
    for line in (shared_data / "laws" / "articles.jsonl").open(encoding="utf-8"):
        row = json.loads(line)
        expected[row["source_file"]] = expected.get(row["source_file"], 0) + 1
    for path in sorted((shared_data / "laws").glob("*.md")):
        sections, problems = load_policy(path)
        assert problems == []
        assert len(sections) == expected[path.name], path.name
    sections, _ = load_policy(shared_data / "laws" / "行政法_居民身份证法(2011-10-29).md")
    art11 = next(s for s in sections if s.heading.endswith("第十一条"))
    assert "丢失的，应当申请补领" in art11.text and art11.date == "2011-10-29"
