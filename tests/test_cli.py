"""The `govbot` command line, run as a person would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from knowledge import BUNDLED_CORPUS

from .conftest import REPO, write_jsonl

GOVBOT = [str(REPO / ".venv" / "bin" / "python"), "-m", "connectors.cli"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([*GOVBOT, *args], capture_output=True, text=True, timeout=1800, env=full_env, cwd=REPO)


def test_kb_validate_on_a_broken_guide_names_file_line_and_field(tmp_path: Path) -> None:
    kb = tmp_path / "kb"
    shutil.copytree(BUNDLED_CORPUS, kb)
    guide = kb / "guides" / "id-card-reissue.md"
    text = guide.read_text(encoding="utf-8").replace("    form: 原件\n", "    form: 正本\n", 1)
    guide.write_text(text, encoding="utf-8")
    line = next(i for i, x in enumerate(text.splitlines(), start=1) if "form: 正本" in x)
    out = run("kb", "validate", str(kb))
    assert out.returncode == 1
    assert f"id-card-reissue.md:{line}: materials[0].form:" in out.stdout
    assert "Traceback" not in out.stderr
    assert run("kb", "validate").returncode == 0


@pytest.mark.model
def test_ask_prints_the_reissue_checklist_in_both_scripts(settings) -> None:  # type: ignore[no-untyped-def]
    env = {"GOVBOT_INDEX_DIR": str(settings.index_root)}
    simplified = run("ask", "身份证丢了怎么补办", env=env)
    traditional = run("ask", "身份證丟了怎麼補辦", env=env)
    assert simplified.returncode == 0, simplified.stderr
    assert "【居民身份证补领】申请材料" in simplified.stdout and "居民户口簿（原件" in simplified.stdout
    assert "来源：居民身份证补领" in simplified.stdout
    assert traditional.stdout == simplified.stdout


@pytest.mark.model
def test_eval_faq_prints_the_contract_json(shared_data: Path, tmp_path: Path) -> None:
    rows = [json.loads(x) for x in (shared_data / "beijing_gov_faq.jsonl").open(encoding="utf-8")][200:260]
    kb = write_jsonl(tmp_path / "kb.jsonl", [{"id": f"q{i}", "answer": r["正文内容"], "department": r["处理单位"]}
                                             for i, r in enumerate(rows) if r["正文内容"]])
    questions = write_jsonl(tmp_path / "q.jsonl", [{"query": r["用户问题"], "expected": f"q{i}"} for i, r in enumerate(rows)]
                            + [{"query": "火星上能办护照吗", "expected": None}])
    out = run("eval", "faq", "--kb", str(kb), "--questions", str(questions), "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    keys = {"n", "recall_at_1", "recall_at_5", "mrr_at_10", "answered", "answered_correct", "answered_wrong",
            "handed_off", "unanswerable", "unanswerable_handed_off", "unanswerable_answered", "latency_ms_p50",
            "latency_ms_p95", "index_build_s"}
    assert set(report) == keys
    assert report["n"] == 61 and report["unanswerable"] == 1
    assert report["answered"] + report["handed_off"] == 61
    assert report["recall_at_5"] >= 0.7 and report["recall_at_1"] <= report["recall_at_5"]
    dropped = json.loads(run("eval", "faq", "--kb", str(kb), "--questions", str(questions), "--json",
                             "--drop-answerable", "0.5", "--seed", "1").stdout)
    assert dropped["unanswerable"] == 1 + 30


def test_eval_faq_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    kb = write_jsonl(tmp_path / "kb.jsonl", [{"id": "a", "answer": "答"}])
    bad = tmp_path / "q.jsonl"
    bad.write_text('{"query": "好"}\n{"query": \n', encoding="utf-8")
    out = run("eval", "faq", "--kb", str(kb), "--questions", str(bad))
    assert out.returncode == 2
    assert f"{bad}:2" in out.stderr and "Traceback" not in out.stderr


def test_admin_create_user_makes_an_account_that_can_log_in(tmp_path: Path) -> None:
    from connectors.auth import Auth
    from connectors.store import open_database

    url = f"sqlite:///{tmp_path / 'desk.db'}"
    env = {"GOVBOT_DATABASE_URL": url, "NEW_PASSWORD": "first-admin-2026"}
    made = run("admin", "create-user", "lead", "--role", "admin", "--name", "组长", "--password-env", "NEW_PASSWORD",
               env=env)
    assert made.returncode == 0 and "lead" in made.stdout, made.stderr
    again = run("admin", "create-user", "lead", "--password-env", "NEW_PASSWORD", env=env)
    assert again.returncode != 0 and "已存在" in again.stderr
    weak = run("admin", "create-user", "x", "--password-env", "WEAK", env={**env, "WEAK": "short"})
    assert weak.returncode != 0 and "至少 8 位" in weak.stderr
    engine, factory = open_database(url)
    try:
        from fastapi import Response

        view = Auth(factory, "k").login("lead", "first-admin-2026", Response())
        assert view["clerk"]["role"] == "admin" and view["clerk"]["display_name"] == "组长"
    finally:
        engine.dispose()
