"""The web app at `/`: static files from app/web (HTML, CSS, JavaScript modules), no CDN and no build step.

Its routes are not API operations, so they stay out of the OpenAPI document; like /docs they need no key (the page
asks for one when the API answers 401 and sends it with every request it makes).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from deepsynthbody.core.errors import NotFound

WEB_DIR = Path(__file__).resolve().parents[1] / "web"
ASSETS_PREFIX = "/web"
# Everything the page loads comes from this service: a hospital network that blocks the internet loses nothing.
# Sample images arrive as data: URLs, a downloaded archive as a blob: URL.
CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' data: blob:; connect-src 'self'; style-src 'self'; "
                           "script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png"}

router = APIRouter(include_in_schema=False)


def _file(path: Path) -> FileResponse:
    return FileResponse(path, media_type=_TYPES.get(path.suffix, "application/octet-stream"),
                        headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY, "Cache-Control": "no-cache",
                                 "X-Content-Type-Options": "nosniff"})


@router.get("/")
def index() -> FileResponse:
    return _file(WEB_DIR / "index.html")


@router.get(ASSETS_PREFIX + "/{name:path}")
def asset(name: str) -> FileResponse:
    path = (WEB_DIR / name).resolve()
    if not path.is_relative_to(WEB_DIR) or not path.is_file() or path.suffix not in _TYPES:
        raise NotFound(f"no file {name!r} in the web app", hint="open / for the web app")
    return _file(path)
