"""`python -m connectors.serve` / `govbot serve`: run the gateway (loads the knowledge index first, then prints the
URLs). Settings come from GOVBOT_* (connectors/config.py); --host/--port override them."""

from __future__ import annotations

import argparse
import copy
from typing import Any, Optional

import uvicorn

from .config import get_gateway_settings


def log_config() -> dict[str, Any]:
    """uvicorn's logging plus our own loggers, every handler masking 身份证号/phone/bank-card numbers."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["filters"] = {"pii": {"()": "connectors.pii.MaskingFilter"}}
    for handler in config["handlers"].values():
        handler["filters"] = ["pii"]
    config["loggers"]["govbot"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    config["loggers"]["uvicorn.access"]["level"] = "WARNING"
    return config


def main(argv: Optional[list[str]] = None) -> None:
    settings = get_gateway_settings()
    parser = argparse.ArgumentParser(description="govbot gateway")
    parser.add_argument("--host", default=settings.host)
    parser.add_argument("--port", type=int, default=settings.port)
    args = parser.parse_args(argv)
    settings.host, settings.port = args.host, args.port
    from retrieval import KnowledgeService

    from .gateway import build_gateway

    kb = KnowledgeService()
    kb.search("身份证")  # load the index and the model (and warm them) before accepting requests
    gateway = build_gateway(settings, kb)
    base = f"http://{args.host}:{args.port}"
    print(f"govbot gateway: {base}/ (portal + widget)  {base}/desk (clerk desk)  {base}/admin  {base}/docs  "
          f"database {gateway.engine.url.render_as_string(hide_password=True)}", flush=True)
    uvicorn.run(gateway.asgi, host=args.host, port=args.port, log_config=log_config(), ws="websockets-sansio")


if __name__ == "__main__":
    main()
