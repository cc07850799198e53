"""The interactive docs (/docs, /redoc) served with their own assets: they work on networks without the internet."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ASSETS_URL = "/docs/static"  # Swagger UI's and ReDoc's JavaScript and CSS, from the fastapi-offline package
PAGES = frozenset({"/docs", "/redoc", "/docs/oauth2-redirect"})
# ReDoc's bundle still draws its sidebar's Redocly logo from cdn.redoc.ly: the browser is told to load images, fonts
# and data from this service only, so it never asks (ReDoc then leaves the logo out).
POLICY = (b"Content-Security-Policy", b"img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'")


class OfflinePages:
    """Adds POLICY to the doc pages' answers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in PAGES:
            await self.app(scope, receive, send)
            return

        async def send_with_policy(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (POLICY[0].lower(), POLICY[1])]
            await send(message)

        await self.app(scope, receive, send_with_policy)


def application(**settings: Any) -> FastAPI:
    """A FastAPI application whose /docs and /redoc load nothing from a CDN."""
    app = FastAPIOffline(static_url=ASSETS_URL, **settings)
    app.add_middleware(OfflinePages)
    return app
