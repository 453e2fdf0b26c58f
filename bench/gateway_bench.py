"""What the gateway's hub costs on top of Rasa: `python -m bench.gateway_bench [--quick]` (loopback only).

The same conversations (bench.rasa_bench's 7-turn shape) go once straight to Rasa's REST channel and once through
the gateway (`POST /api/chat`: store the message, route, store the replies, publish, answer), interleaved turn by
turn so both see the same machine noise. Store: SQLite (default) and PostgreSQL (127.0.0.1:5432). Reported as
ratios of the gateway's latency to Rasa's, measured in the same run. Writes bench/results/gateway_bench.{json,md}.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.rasa_bench import SHAPE, pct, rss_mb, script_for
from bot.runner import (
    HOST,
    REPO,
    Stack,
    free_port,
    gateway_proc,
    http_post_json,
    start_stack,
    train_model,
    wait_healthy,
)

RESULTS = REPO / "bench" / "results" / "gateway_bench.json"
REPORT = REPO / "bench" / "results" / "gateway_bench.md"
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@contextlib.contextmanager
def database(kind: str, folder: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'bench.db'}"
        return
    from sqlalchemy import create_engine, text

    name = f"govbot_bench_{secrets.token_hex(4)}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def turn_texts(n: int) -> list[str]:
    a, b = script_for(n)
    # the 情形 button turn becomes a plain follow-up: both paths must send the same text
    return [s.replace("<A>", a).replace("<B>", b) if "<first" not in s else "那怎么办理" for s in SHAPE]


def one_turn(url: str, body: dict[str, Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    status, reply = http_post_json(url, body, timeout=120)
    if status != 200:
        raise RuntimeError(f"{url} answered {status}: {reply}")
    return (time.perf_counter() - started) * 1000, reply


def paired(stack: Stack, gateway: str, conversations: int, tag: str) -> dict[str, list[float]]:
    """Each turn straight to Rasa, then the same turn through the gateway (different conversation ids)."""
    direct, via = [], []
    for n in range(conversations):
        for text in turn_texts(n):
            ms, _ = one_turn(stack.webhook, {"sender": f"{tag}-d-{n}", "message": text})
            direct.append(ms)
            ms, reply = one_turn(f"{gateway}/api/chat", {"user_id": f"{tag}-g-{n}", "text": text})
            via.append(ms)
            if reply["status"]["state"] != "bot":
                break  # handed off: later turns would go to the desk, not to Rasa
    return {"rasa": direct, "gateway": via}


def concurrent(gateway: str, conversations: int, workers: int, tag: str) -> dict[str, float]:
    def conv(n: int) -> list[float]:
        out = []
        for text in turn_texts(n):
            ms, reply = one_turn(f"{gateway}/api/chat", {"user_id": f"{tag}-c-{n}", "text": text})
            out.append(ms)
            if reply["status"]["state"] != "bot":
                break
        return out
    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        ms = [t for times in pool.map(conv, range(conversations)) for t in times]
    wall = time.perf_counter() - started
    return {"turns": len(ms), "p50_ms": round(pct(ms, 50), 1), "p95_ms": round(pct(ms, 95), 1),
            "msgs_per_s": round(len(ms) / wall, 2)}


def run(quick: bool) -> dict[str, Any]:
    conversations = 4 if quick else 12
    model = train_model(lambda line: None)
    results: dict[str, Any] = {"conversations": conversations}
    with tempfile.TemporaryDirectory() as tmp, start_stack(Path(tmp) / "stack", model) as stack:
        for kind in ("sqlite", "postgresql"):
            with database(kind, Path(tmp)) as url:
                os.environ["GOVBOT_DATABASE_URL"] = url
                port = free_port()
                gw = gateway_proc(port, lambda line: None, stack.rasa_url, stack.token).start()
                try:
                    wait_healthy(gw, f"http://{HOST}:{port}/healthz", lambda s, b: s == 200, 180)
                    base = f"http://{HOST}:{port}"
                    paired(stack, base, 2, f"warm-{kind}")  # warm both paths
                    times = paired(stack, base, conversations, kind)
                    row: dict[str, Any] = {}
                    for name, ms in times.items():
                        row[name] = {"turns": len(ms), "p50_ms": round(pct(ms, 50), 1),
                                     "p95_ms": round(pct(ms, 95), 1)}
                    row["ratio_p50"] = round(row["gateway"]["p50_ms"] / row["rasa"]["p50_ms"], 2)
                    row["ratio_p95"] = round(row["gateway"]["p95_ms"] / row["rasa"]["p95_ms"], 2)
                    row["gateway_10_concurrent"] = concurrent(base, conversations, 10, kind)
                    row["gateway_memory"] = rss_mb(gw.pid)
                    results[kind] = row
                finally:
                    gw.stop()
                    os.environ.pop("GOVBOT_DATABASE_URL", None)
    return results


def report(results: dict[str, Any]) -> str:
    lines = ["| store | Rasa p50 / p95 ms | via gateway p50 / p95 ms | ratio p50 | ratio p95 | "
             "gateway, 10 concurrent: p50 / p95 ms, msgs/s | gateway RSS MB |", "|---|---|---|---|---|---|---|"]
    for kind in ("sqlite", "postgresql"):
        r = results[kind]
        c = r["gateway_10_concurrent"]
        lines.append(f"| {kind} | {r['rasa']['p50_ms']} / {r['rasa']['p95_ms']} | {r['gateway']['p50_ms']} / "
                     f"{r['gateway']['p95_ms']} | {r['ratio_p50']} | {r['ratio_p95']} | {c['p50_ms']} / "
                     f"{c['p95_ms']}, {c['msgs_per_s']} | {r['gateway_memory']['rss_mb']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer conversations (a smoke run)")
    args = parser.parse_args()
    results = run(args.quick)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, ensure_ascii=False, indent=2), encoding="utf-8")
    REPORT.write_text(report(results), encoding="utf-8")
    print(report(results))


if __name__ == "__main__":
    main()
