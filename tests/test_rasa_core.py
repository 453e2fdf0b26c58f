"""The Rasa dialogue core: generated inputs, training data, the trained model, NLU quality and test stories.

These run from the app venv (3.11) and call the Rasa runtime (.venv-rasa, 3.10) through subprocesses. The model
is trained at most once per input hash (bot/train.py caches it under ~/.cache/govbot/rasa-models/).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from bot.generate import generate
from bot.train import RASA, ensure_model, rasa_env
from nlu import make_tokenizer, normalize_aligned
from nlu.service_index import ServiceIndex

from .conftest import REPO

pytestmark = pytest.mark.rasa

GENERATED = REPO / "bot" / "generated"
DATA = [str(REPO / "bot" / "data"), str(GENERATED)]
_MARKUP = re.compile(r"\[([^\]]+)\](?:\(([^)]*)\)|\{([^}]*)\})")


def _rasa(*args: str, timeout: int = 1200) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(RASA), *args], cwd=REPO, env=rasa_env(), capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="session")
def rasa_model() -> Path:
    """The trained model for the current inputs (trained once, then reused from the cache)."""
    return ensure_model(quiet=True)


def _examples(path: Path) -> list[tuple[str, str, list[tuple[int, int, str]]]]:
    """(intent, plain text, [(start, end, entity)]) for every example of an NLU file."""
    out = []
    for item in yaml.safe_load(path.read_text(encoding="utf-8"))["nlu"]:
        if "intent" not in item:
            continue
        for line in item["examples"].splitlines():
            example = line.strip()[2:].strip()
            if not example:
                continue
            text, spans, pos = "", [], 0
            for m in _MARKUP.finditer(example):
                text += example[pos:m.start()]
                start = len(text)
                text += m.group(1)
                entity = m.group(2).split(":")[0] if m.group(2) else json.loads("{" + m.group(3) + "}")["entity"]
                spans.append((start, len(text), entity))
                pos = m.end()
            out.append((item["intent"], text + example[pos:], spans))
    return out


def test_generator_is_idempotent() -> None:
    generate()
    assert not any(generate().values()), "a second run of bot/generate.py must not rewrite anything"
    assert (GENERATED / "jieba" / "dictionary.txt").stat().st_size > 0


def test_training_data_volume_and_annotations() -> None:
    """Enough hand-written examples per intent, and entity annotations on jieba token boundaries."""
    generate()
    hand = _examples(REPO / "bot" / "data" / "nlu.yml")
    per_intent: dict[str, int] = {}
    for intent, _, _ in hand:
        per_intent[intent] = per_intent.get(intent, 0) + 1
    domain = yaml.safe_load((REPO / "bot" / "domain.yml").read_text(encoding="utf-8"))
    for intent in domain["intents"]:
        floor = 25 if intent.startswith("ask_") and intent != "ask_service" else 15
        assert per_intent.get(intent, 0) >= floor, (intent, per_intent.get(intent, 0))
    tokenizer = make_tokenizer(GENERATED / "jieba" / "dictionary.txt", REPO / "var" / "jieba-cache")
    misaligned = []
    for intent, text, spans in hand + _examples(GENERATED / "nlu_templated.yml"):
        bounds, i = {0}, 0
        for word in tokenizer.lcut(normalize_aligned(text)):
            i += len(word)
            bounds.add(i)
        misaligned += [(intent, text, text[s:e]) for s, e, _ in spans if s not in bounds or e not in bounds]
    assert not misaligned, misaligned[:10]


def test_service_index_links_mentions_to_guides() -> None:
    generate()
    data = json.loads((GENERATED / "service_terms.json").read_text(encoding="utf-8"))
    index = ServiceIndex(data["terms"], data["weak"])
    assert index.link("身份证丢了怎么办")[0] == "id-card-reissue"
    assert index.link("身份證丟了怎麼辦")[0] == "id-card-reissue"
    assert index.link("不是护照，是港澳通行证")[0] == "hk-macao-permit"
    assert index.link("上户口要带结婚证吗")[0] == "hukou-newborn"  # 结婚证 here is a material to bring
    guide, span, candidates = index.link("身份证")
    assert guide is None and span is None and "id-card-reissue" in candidates and len(candidates) > 1
    assert index.link("要带啥") == (None, None, [])


def test_rasa_data_validate() -> None:
    generate()
    out = _rasa("data", "validate", "--fail-on-warnings", "--config", "config.yml", "--domain", "bot/domain.yml",
                "--data", *DATA)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]


def test_model_parses_with_custom_components(rasa_model: Path) -> None:
    """Normaliser, jieba, service linking and the intent classifier inside the real Rasa runtime."""
    code = r"""
import asyncio, json, sys
from rasa.core.agent import Agent
agent = Agent.load(sys.argv[1])
async def main():
    out = {}
    for text in json.loads(sys.argv[2]):
        r = await agent.parse_message(text)
        out[text] = {"intent": r["intent"]["name"], "text": r["text"],
                     "service": [e["value"] for e in r["entities"] if e["entity"] == "service"],
                     "region": [e["value"] for e in r["entities"] if e["entity"] == "region"],
                     "candidates": r.get("service_candidates", [])}
    print(json.dumps(out, ensure_ascii=False))
asyncio.run(main())
"""
    texts = ["身份证丢了怎么办", "身份證丟了怎麼辦", "补办身份证要带什么材料", "補辦身份證要帶什麼材料", "那要多少钱",
             "不对，我问的是港澳通行证", "我要人工", "我在北京市", "身份证", "帮我订张机票"]
    out = subprocess.run([str(REPO / ".venv-rasa" / "bin" / "python"), "-c", code, str(rasa_model),
                          json.dumps(texts, ensure_ascii=False)], cwd=REPO, env=rasa_env(), capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    parsed = json.loads(out.stdout.strip().splitlines()[-1])
    assert parsed["身份证丢了怎么办"]["service"] == ["id-card-reissue"]
    for simplified, traditional in [("身份证丢了怎么办", "身份證丟了怎麼辦"), ("补办身份证要带什么材料", "補辦身份證要帶什麼材料")]:
        assert parsed[traditional]["intent"] == parsed[simplified]["intent"]
        assert parsed[traditional]["service"] == parsed[simplified]["service"]
        assert parsed[traditional]["text"] == simplified  # offsets unchanged: same length
    assert parsed["补办身份证要带什么材料"]["intent"] == "ask_materials"
    assert parsed["那要多少钱"]["intent"] == "ask_fee" and parsed["那要多少钱"]["service"] == []
    assert parsed["不对，我问的是港澳通行证"]["intent"] == "deny"
    assert parsed["不对，我问的是港澳通行证"]["service"] == ["hk-macao-permit"]
    assert parsed["我要人工"]["intent"] == "request_human"
    assert parsed["我在北京市"]["region"] == ["北京"]
    assert parsed["身份证"]["service"] == [] and len(parsed["身份证"]["candidates"]) > 1
    assert parsed["帮我订张机票"]["intent"] in {"out_of_scope", "nlu_fallback"}


def test_nlu_held_out_macro_f1(tmp_path: Path) -> None:
    """`rasa test nlu` on a deterministic held-out 20 % of the hand-written examples."""
    from bot.eval_nlu import held_out

    summary = held_out(tmp_path)
    print(f"\nheld-out intent macro-F1 {summary['macro_f1']:.3f} on {summary['n_test']} examples "
          f"({summary['n_wrong']} wrong)")
    assert summary["macro_f1"] >= 0.85, summary


def test_core_test_stories_pass(rasa_model: Path, tmp_path: Path) -> None:
    """`rasa test core --e2e`: intents and entities of the test-story texts and every predicted action."""
    out = _rasa("test", "core", "--e2e", "--model", str(rasa_model), "--stories", "bot/tests", "--out",
                str(tmp_path), "--no-plot")
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    failed = (tmp_path / "failed_test_stories.yml").read_text(encoding="utf-8")
    assert "None of the test stories failed" in failed, failed[:4000]
    report = json.loads((tmp_path / "story_report.json").read_text(encoding="utf-8"))
    assert report["macro avg"]["f1-score"] == pytest.approx(1.0) or report.get("accuracy") == pytest.approx(1.0)
