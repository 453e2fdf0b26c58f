"""The portal chat widget: `/widget.js` (one script tag adds the chat bubble to any page), a demo 政务服务网 page at
`/`, the Rasa socket.io protocol at `/socket.io/` (channel.py), and the widget's JSON helpers under `/api/widget/`.

    app = FastAPI()
    asgi = mount(app, hub, settings)      # serve `asgi` (socket.io in front, the FastAPI app behind it)
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import socketio
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

from .channel import CHANNEL, ERRORS, SCORE_LABELS, WebChannel, rasa_messages, room_of
from .suggest import MAX_QUERY_CHARS, Suggester

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from connectors.config import GatewaySettings
    from connectors.hub import Hub
    from knowledge import Corpus
    from retrieval import KnowledgeService

__all__ = ["CHANNEL", "ERRORS", "SCORE_LABELS", "WebChannel", "mount", "rasa_messages", "room_of", "widget_script"]

STATIC = Path(__file__).resolve().parent / "static"
ASSETS = {  # /widget/<name> → file, content type (a fixed list: nothing else under static/ is reachable)
    "socket.io-client.LICENSE": "text/plain; charset=utf-8",
}


class _CorpusSource:
    """The knowledge base the suggestions come from: the live index's corpus when a KnowledgeService is given
    (so an admin reload is picked up), else the corpus folder loaded once."""

    def __init__(self, kb: Optional[KnowledgeService]) -> None:
        self.kb = kb
        self._loaded: Optional[Corpus] = None
        self._lock = threading.Lock()

    def __call__(self) -> Corpus:
        if self.kb is not None:
            corpus = self.kb.retriever.data.corpus
            if corpus is not None:
                return corpus
        with self._lock:
            if self._loaded is None:
                from knowledge import load_corpus
                from retrieval import get_settings

                root = self.kb.settings.corpus_dir if self.kb is not None else get_settings().corpus_dir
                self._loaded, _ = load_corpus(root)
            return self._loaded

    def loaded(self) -> Optional[Corpus]:
        """Without loading anything (labels of button payloads: best effort)."""
        if self.kb is not None and self.kb._retriever is not None:  # noqa: SLF001 - avoid building an index
            return self.kb.retriever.data.corpus
        return self._loaded


def widget_script(max_chars: int) -> bytes:
    """`/widget.js`: the vendored socket.io client (kept out of the page's globals), the stylesheet and the widget,
    in one self-contained script. Plain files, no build step."""
    vendor = (STATIC / "vendor" / "socket.io.min.js").read_text(encoding="utf-8")
    css = (STATIC / "widget.css").read_text(encoding="utf-8")
    source = (STATIC / "widget.js").read_text(encoding="utf-8")
    config = {"maxChars": max_chars, "scores": {str(k): v for k, v in SCORE_LABELS.items()}}
    return "\n".join([
        "/*! govbot 政务智能客服 widget — Apache-2.0. Includes the Socket.IO client (MIT), see widget/socket.io-client.LICENSE */",
        "(function () {",
        "var module = { exports: {} }, exports = module.exports, define = undefined;",
        vendor,
        "var io = module.exports;",
        f"var GOVBOT_DEFAULTS = {json.dumps(config, ensure_ascii=False)};",
        f"var GOVBOT_CSS = {json.dumps(css, ensure_ascii=False)};",
        source,
        "})();",
        "",
    ]).encode("utf-8")


def mount(app: FastAPI, hub: Hub, settings: GatewaySettings, kb: Optional[KnowledgeService] = None) -> ASGIApp:
    """Add the widget's routes to `app`, register the "web" channel with the hub, and return the ASGI app to serve
    (socket.io at /socket.io/, everything else to `app`)."""
    source = _CorpusSource(kb)
    channel = WebChannel(hub, settings, corpus=source.loaded)
    suggester = Suggester(source)
    app.state.web_channel = channel

    cache: dict[str, Any] = {}

    def script() -> tuple[bytes, str]:
        files = [STATIC / "widget.js", STATIC / "widget.css", STATIC / "vendor" / "socket.io.min.js"]
        key = tuple(p.stat().st_mtime_ns for p in files)
        if cache.get("key") != key:
            body = widget_script(settings.max_text_chars)
            cache.update(key=key, body=body, etag='"' + hashlib.sha256(body).hexdigest()[:32] + '"')
        return cache["body"], cache["etag"]

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def portal() -> FileResponse:
        return FileResponse(STATIC / "portal.html", media_type="text/html; charset=utf-8",
                            headers={"Cache-Control": "no-cache"})

    @app.get("/widget.js", include_in_schema=False)
    def widget_js(request: Request) -> Response:
        body, etag = script()
        headers = {"ETag": etag, "Cache-Control": "no-cache", "Access-Control-Allow-Origin": "*",
                   "X-Content-Type-Options": "nosniff"}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(body, media_type="application/javascript; charset=utf-8", headers=headers)

    @app.get("/widget/{name}", include_in_schema=False)
    def widget_asset(name: str) -> FileResponse:
        if name not in ASSETS:
            raise HTTPException(404, "没有这个文件 / not found")
        path = STATIC / name if name != "socket.io-client.LICENSE" else STATIC / "vendor" / name
        return FileResponse(path, media_type=ASSETS[name], headers={"Cache-Control": "no-cache"})

    cors = {"Access-Control-Allow-Origin": "*"}  # read-only public data, fetched by the widget on any portal

    @app.get("/api/widget/suggest", tags=["widget"], summary="输入联想：事项名称与常见问题")
    def suggest(q: str = Query("", max_length=200, description="市民已输入的文字"),
                limit: int = Query(8, ge=1, le=20)) -> Response:
        items = suggester.suggest(q[:MAX_QUERY_CHARS], limit) if q.strip() else []
        return Response(json.dumps({"q": q, "suggestions": items}, ensure_ascii=False),
                        media_type="application/json", headers=cors)

    @app.get("/api/widget/hot", tags=["widget"], summary="猜你想问：热门问题")
    def hot(limit: int = Query(6, ge=1, le=20)) -> Response:
        return Response(json.dumps({"questions": suggester.hot(limit)}, ensure_ascii=False),
                        media_type="application/json", headers=cors)

    return socketio.ASGIApp(channel.sio, other_asgi_app=app, socketio_path="socket.io")
