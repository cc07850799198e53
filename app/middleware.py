"""ASGI middleware of the API."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send


class StripTrailingSlash:
    """`/models/` and `/jobs/<id>/` are `/models` and `/jobs/<id>`: one trailing slash is dropped before routing.

    Not a redirect: many clients drop a POST's body when they follow one.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if len(path) > 1 and path[-1] == "/":
                scope = dict(scope)
                scope["path"] = path[:-1]
                raw = scope.get("raw_path")
                if raw and raw[-1:] == b"/":
                    scope["raw_path"] = raw[:-1]
        await self.app(scope, receive, send)
