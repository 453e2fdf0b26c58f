"""`python -m bot.actions.serve [--host 127.0.0.1] [--port 5055]`: the action server, one process.

rasa-sdk's own CLI binds 0.0.0.0 (unless SANIC_HOST is set) and starts a Sanic worker manager with a second
process; this entry point serves the same rasa-sdk app (`/webhook`, `/actions`, `/health`) in a single process on
loopback, loads the knowledge index *before* it starts listening (so /health means "ready to answer"), and stops
cleanly on SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot.actions.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("GOVBOT_ACTIONS_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GOVBOT_ACTIONS_PORT", "5055")))
    parser.add_argument("--no-preload", action="store_true", help="load the knowledge index on the first request")
    parser.add_argument("--log-level", default=os.environ.get("GOVBOT_LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)

    for key, value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("TOKENIZERS_PARALLELISM", "false")):
        os.environ.setdefault(key, value)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # sentence-transformers shows a progress bar per query when its logger is at INFO; faiss and rasa-sdk log their
    # start-up chatter at INFO: one line of ours says the same.
    for noisy in ("sanic.access", "sanic.root", "sanic.server", "jieba", "sentence_transformers", "faiss",
                  "rasa_sdk.executor", "transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    # rasa-sdk warns on every request that 3.21 and Rasa 3.6 differ in minor version; tests/test_actions.py proves
    # this pair speaks the same protocol (Rasa 3.6's own client against this server), so the warning says nothing.
    warnings.filterwarnings("ignore", message="Your versions of rasa and rasa_sdk might not be compatible")
    started = time.perf_counter()
    from rasa_sdk.endpoint import create_app
    from rasa_sdk.executor import ActionExecutor

    from . import common

    executor = ActionExecutor()
    executor.register_package("bot.actions")
    if not args.no_preload:
        common.warm_up()
    app = create_app(executor, cors_origins=None)
    app.config.KEEP_ALIVE_TIMEOUT = 120
    logging.getLogger("govbot.actions").info(
        "action server ready in %.1f s on http://%s:%d (actions: %s)", time.perf_counter() - started, args.host,
        args.port, ", ".join(sorted(executor.actions)))
    app.run(host=args.host, port=args.port, single_process=True, access_log=False, motd=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
