"""NLU evaluation with `rasa test nlu`: a held-out split of the hand-written examples, and a cross-validated
comparison of intent classifiers.

    python -m bot.eval_nlu split   [--out DIR]            held-out macro-F1 (rasa test nlu) + confidence histogram
    python -m bot.eval_nlu thresholds [--out DIR]         FallbackClassifier thresholds from 5 folds' predictions
    python -m bot.eval_nlu compare [--out DIR] [--folds 5] [--classifiers sparse logreg diet] [--diet-epochs 30]

Held-out split: per intent, a deterministic 20 % of bot/data/nlu.yml (by a hash of the text) is the test set;
the model is trained on the other 80 % plus the generated supplement and lookup tables (bot/generated/).
Only hand-written examples are ever tested. Results go to var/eval/nlu/ by default (git-ignored).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bot.train import RASA, rasa_env  # noqa: E402

HAND = REPO / "bot" / "data" / "nlu.yml"
GENERATED = REPO / "bot" / "generated"
DEFAULT_OUT = REPO / "var" / "eval" / "nlu"
TEST_SHARE = 5  # one in five


def _examples(block: str) -> list[str]:
    return [line.strip()[2:].strip() for line in block.splitlines() if line.strip().startswith("- ")]


def _fold(example: str) -> int:
    return int(hashlib.sha1(example.encode("utf-8")).hexdigest(), 16) % TEST_SHARE


def split_hand_data(out: Path, fold: int = 0) -> tuple[Path, Path]:
    """Write out/train/{nlu.yml + generated} and out/test/nlu.yml; returns (train folder, test file)."""
    data = yaml.safe_load(HAND.read_text(encoding="utf-8"))
    train_items, test_items = [], []
    for item in data["nlu"]:
        if "intent" not in item:
            train_items.append(item)
            continue
        examples = _examples(item["examples"])
        test = [e for e in examples if _fold(e) == fold]
        if fold == 0 and len(test) < 2:  # every intent is tested at least twice
            test = sorted(examples, key=lambda e: hashlib.sha1(e.encode()).hexdigest())[:2]
        train = [e for e in examples if e not in test]
        train_items.append({"intent": item["intent"], "examples": "".join(f"- {e}\n" for e in train)})
        test_items.append({"intent": item["intent"], "examples": "".join(f"- {e}\n" for e in test)})
    train_dir, test_dir = out / "train", out / "test"
    for d in (train_dir, test_dir):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    dump = {"version": "3.1", "nlu": train_items}
    (train_dir / "nlu.yml").write_text(_dump(dump), encoding="utf-8")
    (test_dir / "nlu.yml").write_text(_dump({"version": "3.1", "nlu": test_items}), encoding="utf-8")
    for f in ("lookups.yml", "nlu_templated.yml"):
        shutil.copy(GENERATED / f, train_dir / f)
    return train_dir, test_dir / "nlu.yml"


def _dump(data: dict[str, Any]) -> str:
    class Literal(str):
        pass

    def literal(dumper: yaml.Dumper, value: Literal) -> yaml.Node:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")

    yaml.add_representer(Literal, literal)
    fixed = {"version": data["version"], "nlu": [
        {k: (Literal(v) if k == "examples" else v) for k, v in item.items()} for item in data["nlu"]]}
    return yaml.dump(fixed, allow_unicode=True, sort_keys=False, width=1000)


def _run(args: list[str], log: Path) -> float:
    started = time.monotonic()
    with open(log, "w") as fh:
        rc = subprocess.run(args, cwd=REPO, env=rasa_env(), stdout=fh, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        raise RuntimeError(f"{' '.join(args[:3])} failed (exit {rc}); see {log}\n" +
                           log.read_text(errors="replace")[-3000:])
    return time.monotonic() - started


def train_nlu(config: Path, nlu: Path, out: Path, name: str) -> tuple[Path, float]:
    out.mkdir(parents=True, exist_ok=True)
    seconds = _run([str(RASA), "train", "nlu", "--config", str(config), "--nlu", str(nlu), "--out", str(out),
                    "--fixed-model-name", name], out / f"train-{name}.log")
    return out / f"{name}.tar.gz", seconds


def test_nlu(model: Path, nlu: Path, out: Path) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    _run([str(RASA), "test", "nlu", "--model", str(model), "--nlu", str(nlu), "--out", str(out), "--successes",
          "--no-plot"], out / "test.log")
    report = json.loads((out / "intent_report.json").read_text(encoding="utf-8"))
    return report


def confidences(results: Path) -> tuple[list[float], list[float]]:
    """(confidences of correct predictions, of wrong predictions) from `rasa test nlu --successes`."""
    ok = json.loads((results / "intent_successes.json").read_text(encoding="utf-8")) \
        if (results / "intent_successes.json").exists() else []
    bad = json.loads((results / "intent_errors.json").read_text(encoding="utf-8")) \
        if (results / "intent_errors.json").exists() else []
    return [r["intent_prediction"]["confidence"] for r in ok], [r["intent_prediction"]["confidence"] for r in bad]


_RANKINGS = r"""
import asyncio, json, sys, yaml
from rasa.core.agent import Agent
agent = Agent.load(sys.argv[1])
rows = []
async def main():
    for item in yaml.safe_load(open(sys.argv[2], encoding="utf-8"))["nlu"]:
        for line in item["examples"].splitlines():
            text = line.strip()[2:].strip()
            if not text:
                continue
            import re
            text = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", text)
            r = await agent.parse_message(text)
            ranking = [x for x in r.get("intent_ranking", []) if x["name"] != "nlu_fallback"]
            rows.append({"text": text, "intent": item["intent"], "predicted": ranking[0]["name"],
                         "top1": ranking[0]["confidence"],
                         "top2": ranking[1]["confidence"] if len(ranking) > 1 else 0.0})
asyncio.run(main())
json.dump(rows, open(sys.argv[3], "w", encoding="utf-8"), ensure_ascii=False)
"""


def rankings(model: Path, test_file: Path, out: Path) -> list[dict[str, Any]]:
    """Top-1/top-2 confidences per test example (the model is loaded in the Rasa runtime)."""
    target = out / "rankings.json"
    python = RASA.parent / "python"
    _run([str(python), "-c", _RANKINGS, str(model), str(test_file), str(target)], out / "rankings.log")
    return json.loads(target.read_text(encoding="utf-8"))


WRONG_COST = 2.0  # a wrong answer costs as much as two needless clarifying questions


def choose_thresholds(rows: list[dict[str, Any]], wrong_cost: float = WRONG_COST) -> tuple[float, float, float]:
    """(threshold, ambiguity_threshold, cost) minimising  wrong_cost × (wrong intents let through)
    + (correct intents sent to the fallback, i.e. a needless clarification), over a 0.05 grid; ties → lower."""
    best: tuple[float, float, float] = (0.0, 0.0, float("inf"))
    for t in [i / 100 for i in range(10, 65, 5)]:
        for a in [i / 100 for i in range(0, 35, 5)]:
            cost = 0.0
            for r in rows:
                falls_back = r["top1"] < t or r["top1"] - r["top2"] < a
                if r["predicted"] != r["intent"] and not falls_back:
                    cost += wrong_cost
                elif r["predicted"] == r["intent"] and falls_back:
                    cost += 1.0
            if cost < best[2] - 1e-9:
                best = (t, a, cost)
    return best


def histogram(ok: list[float], bad: list[float], step: float = 0.1) -> list[tuple[str, int, int]]:
    bins = int(round(1 / step))

    def band(c: float) -> int:
        return min(int(c / step), bins - 1)

    return [(f"{i * step:.1f}-{(i + 1) * step:.1f}", sum(band(c) == i for c in ok), sum(band(c) == i for c in bad))
            for i in range(bins)]


def held_out(out: Path = DEFAULT_OUT / "split", config: Path = REPO / "config.yml") -> dict[str, Any]:
    from bot.generate import generate

    generate()
    train_dir, test_file = split_hand_data(out)
    model, seconds = train_nlu(config, train_dir, out / "models", "split")
    report = test_nlu(model, test_file, out / "results")
    ok, bad = confidences(out / "results")
    rows = rankings(model, test_file, out / "results")
    threshold, ambiguity, _ = choose_thresholds(rows)
    wrong_rows = [r for r in rows if r["predicted"] != r["intent"]]
    summary = {
        "macro_f1": report["macro avg"]["f1-score"], "accuracy": report.get("accuracy"),
        "train_seconds": round(seconds, 1), "n_test": len(ok) + len(bad), "n_wrong": len(bad),
        "histogram": histogram(ok, bad), "threshold": threshold, "ambiguity_threshold": ambiguity,
        "fallback_catches_wrong": sum(r["top1"] < threshold or r["top1"] - r["top2"] < ambiguity
                                      for r in wrong_rows),
        "fallback_loses_correct": sum(r["top1"] < threshold or r["top1"] - r["top2"] < ambiguity
                                      for r in rows if r not in wrong_rows),
        "wrong": sorted(bad), "per_intent_f1": {k: round(v["f1-score"], 3) for k, v in report.items()
                                                 if isinstance(v, dict) and "f1-score" in v and " avg" not in k},
    }
    (out / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=1), encoding="utf-8")
    return summary


def pooled_rankings(out: Path = DEFAULT_OUT / "folds", config: Path = REPO / "config.yml") -> list[dict[str, Any]]:
    """Top-1/top-2 confidences of every hand-written example, each predicted by a model that never saw it
    (5 folds by the hash of the text; each model also trained on the generated supplement)."""
    from bot.generate import generate

    generate()
    rows: list[dict[str, Any]] = []
    for fold in range(TEST_SHARE):
        folder = out / f"fold{fold}"
        train_dir, test_file = split_hand_data(folder, fold)
        model, _ = train_nlu(config, train_dir, folder / "models", f"fold{fold}")
        (folder / "results").mkdir(parents=True, exist_ok=True)
        rows += rankings(model, test_file, folder / "results")
    (out / "rankings.json").write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return rows


def threshold_report(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r["top1"] for r in rows if r["predicted"] == r["intent"]]
    bad = [r["top1"] for r in rows if r["predicted"] != r["intent"]]
    t, a, cost = choose_thresholds(rows)

    def effect(t: float, a: float) -> tuple[int, int]:
        falls = [r for r in rows if r["top1"] < t or r["top1"] - r["top2"] < a]
        return sum(r["predicted"] != r["intent"] for r in falls), sum(r["predicted"] == r["intent"] for r in falls)

    caught, lost = effect(t, a)
    return {"n": len(rows), "n_wrong": len(bad), "histogram": histogram(ok, bad), "threshold": t,
            "ambiguity_threshold": a, "caught_wrong": caught, "lost_correct": lost,
            "sensitivity": {str(c): choose_thresholds(rows, c)[:2] for c in (1.5, 2.0, 3.0)}}


CLASSIFIERS: dict[str, dict[str, Any]] = {
    "sparse": {"name": "nlu.rasa_components.SparseIntentClassifier", "C": 30.0},
    "logreg": {"name": "LogisticRegressionClassifier", "max_iter": 1000},
    "diet": {"name": "DIETClassifier", "epochs": 30, "entity_recognition": False, "constrain_similarities": True},
}


def variant_config(kind: str, out: Path, diet_epochs: int) -> Path:
    config = yaml.safe_load((REPO / "config.yml").read_text(encoding="utf-8"))
    spec = copy.deepcopy(CLASSIFIERS[kind])
    if kind == "diet":
        spec["epochs"] = diet_epochs
    pipeline = []
    for comp in config["pipeline"]:
        if comp["name"].endswith("SparseIntentClassifier"):
            comp = spec
        pipeline.append(comp)
    config["pipeline"] = pipeline
    path = out / f"config-{kind}.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def compare(out: Path = DEFAULT_OUT / "compare", folds: int = 5, kinds: tuple[str, ...] = ("sparse", "logreg"),
            diet_epochs: int = 30) -> dict[str, Any]:
    """`rasa test nlu --cross-validation` per classifier on the hand-written examples (+ lookup tables)."""
    from bot.generate import generate

    generate()
    data = out / "data"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    shutil.copy(HAND, data / "nlu.yml")
    shutil.copy(GENERATED / "lookups.yml", data / "lookups.yml")
    results = {}
    for kind in kinds:
        config = variant_config(kind, out, diet_epochs)
        res = out / kind
        res.mkdir(parents=True, exist_ok=True)
        seconds = _run([str(RASA), "test", "nlu", "--config", str(config), "--nlu", str(data), "--cross-validation",
                        "--folds", str(folds), "--out", str(res), "--no-plot"], res / "cv.log")
        report = json.loads((res / "intent_report.json").read_text(encoding="utf-8"))
        results[kind] = {"macro_f1": round(report["macro avg"]["f1-score"], 4),
                         "accuracy": round(report.get("accuracy", 0.0), 4),
                         "cv_seconds": round(seconds, 1), "folds": folds}
        print(kind, results[kind], flush=True)
        (out / "summary.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    return results


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    th = sub.add_parser("thresholds")
    th.add_argument("--out", type=Path, default=DEFAULT_OUT / "folds")
    s = sub.add_parser("split")
    s.add_argument("--out", type=Path, default=DEFAULT_OUT / "split")
    c = sub.add_parser("compare")
    c.add_argument("--out", type=Path, default=DEFAULT_OUT / "compare")
    c.add_argument("--folds", type=int, default=5)
    c.add_argument("--classifiers", nargs="+", default=["sparse", "logreg"], choices=sorted(CLASSIFIERS))
    c.add_argument("--diet-epochs", type=int, default=30)
    args = parser.parse_args(argv)
    if args.cmd == "split":
        summary = held_out(args.out)
        print(f"held-out intent macro-F1 {summary['macro_f1']:.3f} on {summary['n_test']} hand-written examples "
              f"({summary['n_wrong']} wrong); rasa train nlu {summary['train_seconds']} s")
        print("confidence  correct  wrong")
        for band, n_ok, n_bad in summary["histogram"]:
            print(f"{band:>9}  {n_ok:7d}  {n_bad:5d}")
        print(f"FallbackClassifier threshold {summary['threshold']}, ambiguity_threshold "
              f"{summary['ambiguity_threshold']} (least cost, a wrong intent = {WRONG_COST} clarifications): catches "
              f"{summary['fallback_catches_wrong']}/{summary['n_wrong']} wrong and loses "
              f"{summary['fallback_loses_correct']}/{summary['n_test'] - summary['n_wrong']} correct predictions")
    elif args.cmd == "thresholds":
        report = threshold_report(pooled_rankings(args.out))
        (args.out / "thresholds.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
        print(f"{report['n']} hand-written examples, each predicted by a model that never saw it: "
              f"{report['n_wrong']} wrong intents")
        print("confidence  correct  wrong")
        for band, n_ok, n_bad in report["histogram"]:
            print(f"{band:>9}  {n_ok:7d}  {n_bad:5d}")
        print(f"FallbackClassifier threshold {report['threshold']}, ambiguity_threshold "
              f"{report['ambiguity_threshold']}: catches {report['caught_wrong']}/{report['n_wrong']} wrong, sends "
              f"{report['lost_correct']}/{report['n'] - report['n_wrong']} correct to a clarification "
              f"(a wrong intent = {WRONG_COST} clarifications; at 1.5/2/3: {report['sensitivity']})")
    else:
        compare(args.out, args.folds, tuple(args.classifiers), args.diet_epochs)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
