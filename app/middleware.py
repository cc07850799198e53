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
    client's disconnect). `uploads` gives routes (method, path) their own limit and the setting that holds it
    (POST /models takes a model archive, far larger than any JSON body).
    """

    def __init__(self, app: ASGIApp, max_bytes: int, timeout: float,
                 uploads: dict[tuple[str, str], tuple[int, str]] | None = None) -> None:
        self.app, self.max_bytes, self.timeout = app, max_bytes, timeout
        self.uploads = uploads or {}

    @staticmethod
    def _message(max_bytes: int, setting: str) -> str:
        what = ("a generation request is a few hundred bytes" if setting == "DSB_MAX_BODY_BYTES"
                else "the limit is the server's setting")
        return f"the request body is larger than {max_bytes} bytes ({setting}); send a smaller body ({what})"

    def _too_large(self) -> str:
        return self._message(self.max_bytes, "DSB_MAX_BODY_BYTES")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes, setting = self.uploads.get((scope["method"], scope["path"]), (self.max_bytes, "DSB_MAX_BODY_BYTES"))
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > max_bytes:
                    from app.errors import error_response

                    await error_response(413, self._message(max_bytes, setting),
                                         headers={"Connection": "close"})(scope, receive, send)
                    return
                break
        received = 0
        finished = False
        timeout = self.timeout

        def too_large() -> str:
            return self._message(max_bytes, setting)

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
