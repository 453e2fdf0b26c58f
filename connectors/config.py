"""Gateway settings (`GOVBOT_*`, optional `.env`). Defaults run everything embedded: an SQLite file, Rasa on
127.0.0.1:5005, no WeChat account."""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path
from typing import Optional

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

_REPO = Path(__file__).resolve().parent.parent
VAR = _REPO / "var"


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GOVBOT_", env_file=".env", extra="ignore")

    host: str = Field(default="127.0.0.1", description="Address the gateway listens on.")
    port: int = Field(default=8000, description="Port of the gateway.")
    public_url: str = Field(default="", description="Base URL citizens reach the gateway at (default http://host:port).")
    database_url: str = Field(
        default=f"sqlite:///{VAR / 'govbot.db'}",
        description="SQLAlchemy URL of the conversation store; e.g. postgresql+psycopg://user@127.0.0.1:5432/govbot.",
    )
    rasa_url: str = Field(default="http://127.0.0.1:5005", description="Rasa server (REST channel + HTTP API).")
    rasa_token: Optional[str] = Field(default=None, description="Rasa HTTP API token (default: var/rasa/token).")
    rasa_timeout: float = Field(default=20.0, gt=0, description="Seconds to wait for Rasa before 「系统繁忙」.")
    secret_key: str = Field(default="", description="Signs session cookies; default: generated once in var/secret_key.")
    cookie_secure: bool = Field(default=False, description="Send the desk session cookie over https only.")
    max_text_chars: int = Field(default=1000, ge=1, description="Longest citizen message accepted.")
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, description="Largest request body accepted.")
    office_hours: str = Field(
        default="mon-fri 09:00-12:00,13:30-17:30",
        description="When clerks answer (Asia/Shanghai); outside it tickets wait and citizens are told when.",
    )
    timezone: str = Field(default="Asia/Shanghai")
    sla_minutes: int = Field(default=10, ge=1, description="Waiting time after which a ticket shows as overdue.")
    api_token: str = Field(
        default="", description="Bearer token for the JSON chat channel (/api/chat…) used by other systems; "
        "empty = only callers on this machine (loopback) may use it.")
    widget_origins: str = Field(
        default="*", description="Sites allowed to embed the widget (socket.io CORS), comma-separated; * = any.")
    redis_url: Optional[str] = Field(default=None, description="Redis for live pushes across gateway replicas.")
    wechat_token: str = Field(default="", description="公众号 Token (server configuration).")
    wechat_appid: str = Field(default="", description="公众号 AppID.")
    wechat_secret: str = Field(default="", description="公众号 AppSecret (for the customer-service message API).")
    wechat_aes_key: str = Field(default="", description="EncodingAESKey, 43 characters; empty = plaintext mode.")
    wechat_answer_budget: float = Field(
        default=4.0, gt=0, lt=5, description="Seconds a 公众号 callback waits for the answer before replying `success` "
        "and sending it by the customer-service API (WeChat gives up after 5 s).")
    wechat_api_base: str = Field(default="https://api.weixin.qq.com", description="WeChat API base URL.")

    def secret(self) -> str:
        """The cookie-signing key: GOVBOT_SECRET_KEY, or one generated once and kept in var/secret_key (mode 600)."""
        if self.secret_key:
            return self.secret_key
        path = VAR / "secret_key"
        if not path.exists():
            VAR.mkdir(parents=True, exist_ok=True)
            try:
                fd = path.open("x", encoding="utf-8")
            except FileExistsError:
                return path.read_text(encoding="utf-8").strip()
            with fd:
                path.chmod(0o600)
                fd.write(secrets.token_urlsafe(32))
        return path.read_text(encoding="utf-8").strip()


@lru_cache(maxsize=1)
def get_gateway_settings() -> GatewaySettings:
    return GatewaySettings()
