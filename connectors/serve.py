"""`python -m connectors.serve`: run the gateway (loads the knowledge index first, then prints the URL)."""

from __future__ import annotations

import argparse

import uvicorn

from .gateway import create_app


def main() -> None:
    parser = argparse.ArgumentParser(description="govbot gateway")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    from retrieval import KnowledgeService

    kb = KnowledgeService()
    kb.search("身份证")  # load the index and the model (and warm them) before accepting requests
    app = create_app(kb)
    print(f"govbot is running: http://{args.host}:{args.port}/docs  (POST /api/ask; Ctrl-C stops)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
