"""The WeChat 公众号 channel (issue 5): ``/wechat`` callback and the customer-service message API.

``mount(app, hub, settings, kv)`` is all the gateway calls. See ``channel.py`` for how a callback is handled."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI, HTTPException

from connectors.config import GatewaySettings
from connectors.hub import Hub

from .channel import ANSWER_BUDGET_S, HOT_QUESTIONS, NOT_CONFIGURED, WeChatChannel
from .kvstore import KVLike

__all__ = ["ANSWER_BUDGET_S", "HOT_QUESTIONS", "WeChatChannel", "mount"]


def mount(app: FastAPI, hub: Hub, settings: GatewaySettings, kv: KVLike, *,
          answer_budget_s: float = ANSWER_BUDGET_S, hot_questions: Sequence[str] = HOT_QUESTIONS,
          ) -> WeChatChannel | None:
    """Add ``GET/POST /wechat`` and register the hub's ``"wechat"`` deliverer. Without ``GOVBOT_WECHAT_TOKEN`` the
    route answers 404 「本系统未配置微信公众号」 and nothing is registered. Raises ValueError for a malformed
    EncodingAESKey (at start-up, not at the first message). ``answer_budget_s``: how long a callback waits for the
    hub before answering ``success`` and sending the answer by the customer-service API."""
    if not settings.wechat_token:
        async def not_configured() -> None:
            raise HTTPException(404, NOT_CONFIGURED)

        app.add_api_route("/wechat", not_configured, methods=["GET", "POST"], include_in_schema=False)
        return None
    channel = WeChatChannel(hub, settings, kv, answer_budget_s=answer_budget_s, hot_questions=hot_questions)
    app.add_api_route("/wechat", channel.verify, methods=["GET"], include_in_schema=False)
    app.add_api_route("/wechat", channel.callback, methods=["POST"], include_in_schema=False)
    hub.register_channel("wechat", channel.deliver)
    return channel
