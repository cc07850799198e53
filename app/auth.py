"""Who is calling: `Authorization: Bearer KEY` resolved into a `Caller` on every route but health and the docs.

An ASGI middleware, so every route (the generate route takes the bare Request) gets `request.state.caller`, and a
request without a valid key is answered 401 before routing. A presented key is hashed (sha256) and its record
read by that hash in one Redis round trip, which also records its last use and counts its requests this second
(`deepsynthbody.core.keys.AUTHENTICATE`); the stored hash is compared with `hmac.compare_digest`. Nothing is cached:
a revoked key is refused on its next request. With `DSB_AUTH=off` every caller is `anonymous`, an admin.

A GET or HEAD of a job's archive without the header may carry a download link instead (`?link=`, made by
POST /jobs/{id}/result/link; `deepsynthbody.core.keys` says what it is): its key is read by id, the signature
checked for that job and expiry, and the request goes on as that key's, rate limit included.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import time
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import parse_qs

import redis.exceptions
from fastapi import Depends, Request
from redis.asyncio import Redis as AsyncRedis
from starlette.types import ASGIApp, Receive, Scope, Send

from app.errors import RETRY_AFTER_SECONDS, error_response
from deepsynthbody.core import keys
from deepsynthbody.core.keys import Caller
from deepsynthbody.core.settings import Settings

log = logging.getLogger(__name__)

PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/docs", "/redoc", "/openapi.json", "/"})
# the docs' own assets (app.docs.ASSETS_URL), Swagger UI's OAuth2 redirect page, the web app's files (app.routes.web)
PUBLIC_PREFIX = ("/docs/", "/web/")
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="deepsynthbody"'}
SCHEME_NAME = "APIKey"
SECURITY_SCHEME = {"type": "http", "scheme": "bearer",
                   "description": "An API key: `deepsynthbody keys create --name NAME` (or POST /admin/keys) prints one. "
                   "Sent as `Authorization: Bearer KEY`."}

__all__ = ["Caller", "CallerDep", "Authenticate"]


def _bearer(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            token = token.strip()
            return token if scheme.lower() == "bearer" and token else None
    return None


class _LinkRefused(Exception):
    """A download link that opens nothing; its message says why and what to do."""


_RESULT_PATH = re.compile(r"/jobs/([0-9a-f]{1,64})/result")


def _download_link(scope: Scope) -> tuple[str, str] | None:
    """(job id, the `link` parameter) of a GET or HEAD of a job's archive that carries a download link."""
    match = _RESULT_PATH.fullmatch(scope["path"])
    if match is None or scope["method"] not in ("GET", "HEAD"):
        return None
    values = parse_qs(scope["query_string"].decode("latin-1")).get(keys.LINK_PARAMETER)
    return (match[1], values[-1]) if values else None


class KeyLookups:
    """Keys presented together are checked together: one pipeline of the AUTHENTICATE script per batch, in one
    round trip. A lone request is sent at once (no waiting for company); requests that arrive while a batch is in
    flight go into the next. Under 50 concurrent clients this costs a fraction of one round trip per request."""

    def __init__(self, redis_url: str) -> None:
        self.redis = AsyncRedis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=10, health_check_interval=30)
        self.sha = hashlib.sha1(keys.AUTHENTICATE.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1
        self._waiting: list[tuple[list[str], list[str], asyncio.Future[list[Any]]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def lookup(self, script_keys: list[str], args: list[str]) -> list[Any]:
        done: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._waiting.append((script_keys, args, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_batches())
        return await done

    async def _write_batches(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                replies = await self._run(batch)
            except Exception as exc:  # noqa: BLE001 - every request of the batch gets the error
                for _, _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
            else:
                for (_, _, done), reply in zip(batch, replies, strict=True):
                    if not done.done():
                        done.set_result(reply)

    async def _run(self, batch: list[tuple[list[str], list[str], asyncio.Future[list[Any]]]]) -> list[Any]:
        for attempt in range(2):
            async with self.redis.pipeline(transaction=False) as pipe:
                for script_keys, args, _ in batch:
                    pipe.evalsha(self.sha, len(script_keys), *script_keys, *args)
                replies = await pipe.execute(raise_on_error=False)
            if attempt == 0 and any(isinstance(r, redis.exceptions.NoScriptError) for r in replies):
                await self.redis.script_load(keys.AUTHENTICATE)  # a new or flushed Redis
                continue
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
            return replies
        raise AssertionError("unreachable")


class Authenticate:
    """Sets `scope["state"]["caller"]`; 401 (with WWW-Authenticate) for a missing, unknown or revoked key, 429 for a
    key over its requests per second, 503 when Redis cannot be reached."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.required = (settings.auth or "required") == "required"
        self.rate_limit = settings.rate_limit_per_second
        self.defaults = (settings.default_samples_per_day, settings.default_max_active_jobs)
        self.anonymous = keys.anonymous(*self.defaults)
        self._lookups: KeyLookups | None = None
        self.redis_url = str(settings.redis_url)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        path: str = scope["path"]
        if not self.required or path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIX):
            state["caller"] = self.anonymous if not self.required else None
            await self.app(scope, receive, send)
            return
        key = _bearer(scope)
        link = _download_link(scope) if key is None else None
        if key is None and link is None:
            await self._refuse(scope, receive, send, "this route needs an API key: send `Authorization: Bearer KEY`")
            return
        now = time.time()
        try:
            if self._lookups is None:
                self._lookups = KeyLookups(self.redis_url)  # in the server's event loop
            if key is not None:
                script_keys, args, key_digest = keys.authenticate_args(key, self.rate_limit, now)
            else:
                assert link is not None
                try:
                    link_digest = await self._link_digest(*link, now)
                except _LinkRefused as refused:
                    await self._refuse(scope, receive, send, str(refused))
                    return
                script_keys, args, key_digest = keys.digest_args(link_digest, self.rate_limit, now)
            reply = await self._lookups.lookup(script_keys, args)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.BusyLoadingError) as exc:
            log.warning("Redis unreachable while checking an API key: %s", exc)
            response = error_response(503, "the job queue (Redis) is unreachable; nothing was done, retry later",
                                      headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
            await response(scope, receive, send)
            return
        caller, over = keys.caller_from_reply(reply, key_digest, *self.defaults)
        if caller is None:
            await self._refuse(scope, receive, send, "the API key is not valid (wrong, or revoked)")
            return
        if over:
            retry = max(1, int(now) + 1 - int(now))
            response = error_response(
                429, f"rate limit: at most {self.rate_limit} requests per second per key (DSB_RATE_LIMIT_PER_SECOND); "
                f"retry after {retry} s", headers={"Retry-After": str(retry)}, limit="requests_per_second",
                value=self.rate_limit)
            await response(scope, receive, send)
            return
        state["caller"] = caller
        await self.app(scope, receive, send)

    async def _link_digest(self, job_id: str, value: str, now: float) -> str:
        """The digest of the key that signed a download link for this job; `_LinkRefused` saying why the link
        opens nothing (malformed, expired, its key revoked, another job's, tampered with)."""
        assert self._lookups is not None
        anew = f"ask for a new one with POST /jobs/{job_id}/result/link (or send `Authorization: Bearer KEY`)"
        parsed = keys.parse_download_link(value)
        if parsed is None:
            raise _LinkRefused(f"the download link is not one this service makes: {anew}")
        key_id, expires, signature = parsed
        if expires < now:
            when = datetime.fromtimestamp(expires, UTC).isoformat(timespec="seconds")
            raise _LinkRefused(f"the download link expired at {when}: {anew}")
        stored = await self._lookups.redis.hget(keys.INDEX, key_id)
        key_digest = stored.decode() if isinstance(stored, bytes) else stored
        if not key_digest or not hmac.compare_digest(keys.sign_link(key_digest, job_id, expires), signature):
            raise _LinkRefused(f"the download link is not valid (its key was revoked, or it was made for another job): "
                               f"{anew}")
        return key_digest

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, message: str) -> None:
        await error_response(401, message, headers=CHALLENGE)(scope, receive, send)


async def get_caller(request: Request) -> Caller:
    return request.state.caller


CallerDep = Annotated[Caller, Depends(get_caller)]


def caller_of(request: Request) -> Caller:
    return request.state.caller


def declare_security(doc: dict) -> None:
    """The OpenAPI document's bearer scheme (the "Authorize" button of /docs) on every route but the public ones,
    each of which then declares the 401 (and the 429 of the per-key request rate) it may answer."""
    from app.errors import _DESCRIPTIONS

    doc.setdefault("components", {}).setdefault("securitySchemes", {})[SCHEME_NAME] = SECURITY_SCHEME
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    headers = {401: {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}},
               429: {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}}}
    for path, item in doc.get("paths", {}).items():
        if path in PUBLIC_PATHS:
            continue
        for method, operation in item.items():
            operation["security"] = [{SCHEME_NAME: []}]
            for status in (401, 429):
                declared = operation.setdefault("responses", {}).setdefault(
                    str(status), {"description": _DESCRIPTIONS[status], "headers": headers[status]})
                if method != "head":
                    declared.setdefault("content", error)
