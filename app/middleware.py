"""ASGI middleware of the API."""

from __future__ import annotations

import asyncio

from fastapi.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


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


class BodyLimits:
    """Request bodies: larger than `max_bytes` refused with 413 before anything parses them (at once from a
    Content-Length, else while a chunked body arrives), and a body that sends nothing for `timeout` seconds ends
    with 408 (the connection is then closed), so slow or stalled uploads hold nothing for long.

    Only the body is timed: once it has arrived, `receive` is passed through (a stream waits on it for the
    client's disconnect).
    """

    def __init__(self, app: ASGIApp, max_bytes: int, timeout: float) -> None:
        self.app, self.max_bytes, self.timeout = app, max_bytes, timeout

    def _too_large(self) -> str:
        return (f"the request body is larger than {self.max_bytes} bytes (DSB_MAX_BODY_BYTES); "
                "send a smaller body (a generation request is a few hundred bytes)")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    from app.errors import error_response

                    await error_response(413, self._too_large(), headers={"Connection": "close"})(scope, receive, send)
                    return
                break
        received = 0
        finished = False
        max_bytes, timeout, too_large = self.max_bytes, self.timeout, self._too_large

        async def limited_receive() -> Message:
            nonlocal received, finished
            if finished:
                return await receive()
            try:
                async with asyncio.timeout(timeout):
                    message = await receive()
            except TimeoutError:
                raise HTTPException(408, f"the request body sent nothing for {timeout:g} s (DSB_BODY_TIMEOUT); "
                                    "send it at once", headers={"Connection": "close"}) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    raise HTTPException(413, too_large(), headers={"Connection": "close"})
                finished = not message.get("more_body", False)
            else:
                finished = True
            return message

        await self.app(scope, limited_receive, send)
