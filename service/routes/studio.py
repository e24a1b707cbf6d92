"""GET /: HistoSynth Studio, the web page (plain HTML, CSS and JS from ``service/static``).

The page and its assets hold no secret, so they need no API key; the page asks for the
key and sends it as ``X-API-Key`` on its API calls.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
"""The studio's files, shipped as package data and served under ``/static``."""

CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
"""The page loads nothing from elsewhere and runs no inline script."""

router = APIRouter(include_in_schema=False)


@router.get("/")
def studio() -> FileResponse:
    """The studio page."""
    headers = {"Content-Security-Policy": CSP, "Cache-Control": "no-cache"}
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=headers)
