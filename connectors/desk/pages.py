"""The clerk desk (`/desk`) and admin (`/admin`) pages: static HTML/JS/CSS, no build step.

The pages talk to the JSON API (`/api/auth`, `/api/desk`, `/api/admin`) and the desk websocket (`/desk/ws`);
this module only serves the files. Every HTML response carries a strict Content-Security-Policy (scripts and
styles from this origin only, no inline code), so a string that slipped into the DOM as markup still could not
run script.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent / "static"

CSP = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",  # CSP level 3: 'self' also allows ws:/wss: to this host
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])

PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    # The pages are small; always revalidate so a deploy is picked up at once.
    "Cache-Control": "no-cache",
}


def _page(name: str) -> FileResponse:
    return FileResponse(STATIC / name, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


def mount_pages(app: FastAPI) -> None:
    """Serve GET /desk and /admin and the assets under /desk/static/ (desk.js, desk.css, admin.js)."""

    @app.api_route("/desk", methods=["GET", "HEAD"], include_in_schema=False)
    def desk_page() -> FileResponse:
        return _page("desk.html")

    @app.api_route("/admin", methods=["GET", "HEAD"], include_in_schema=False)
    def admin_page() -> FileResponse:
        return _page("admin.html")

    app.mount("/desk/static", StaticFiles(directory=STATIC, check_dir=True), name="desk-static")
