"""Which passage chunk size serves answers best: `govbot eval faq` on a fixed subset of the dev split
(the first N answers and their dev questions) at several GOVBOT_MAX_PASSAGE_CHARS values.

    python -m bench.chunk_sizes [--answers 600] [--sizes 150 300 600]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from retrieval.evaluate import evaluate_faq
from retrieval.settings import get_settings

from .faq_data import prepare


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--answers", type=int, default=600)
    parser.add_argument("--sizes", type=int, nargs="*", default=[150, 300, 600])
    args = parser.parse_args()
    settings = get_settings()
    paths = prepare(settings.cache_dir / "eval")
    kb_rows = [json.loads(x) for x in paths["kb"].open(encoding="utf-8")][: args.answers]
    ids = {r["id"] for r in kb_rows}
    questions = [q for q in map(json.loads, paths["dev"].open(encoding="utf-8")) if q["expected"] in ids]
    work = settings.cache_dir / "bench-chunks"
    work.mkdir(parents=True, exist_ok=True)
    kb_path, q_path = work / "kb.jsonl", work / "q.jsonl"
    kb_path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kb_rows), encoding="utf-8")
    q_path.write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in questions), encoding="utf-8")
    rows = {}
    for size in args.sizes:
        local = settings.model_copy(update={"max_passage_chars": size})
        report = evaluate_faq(kb_path, q_path, settings=local)
        rows[size] = report
        print(size, json.dumps(report), flush=True)
    out = Path("bench/results/chunk_sizes.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    print("\n| max chars | R@1 | R@5 | MRR@10 | index build s |\n|---|---|---|---|---|")
    for size, r in rows.items():
        print(f"| {size} | {r['recall_at_1']:.3f} | {r['recall_at_5']:.3f} | {r['mrr_at_10']:.3f} | {r['index_build_s']} |")


if __name__ == "__main__":
    main()
