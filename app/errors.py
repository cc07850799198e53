"""Every error the API returns goes through here: domain errors, bad input, Redis outages, unknown routes.

One shape everywhere: `message`, a sentence saying what happened and what to do, and `detail` (the same words,
or for a 422 one object per problem), which older clients read. Nothing a client sends is repeated at length:
an error quotes at most `ECHO_CHARS` characters of any value it names.
"""

from __future__ import annotations

import logging
import math
import reprlib
from typing import Any

import redis.exceptions
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.schemas import ErrorBody, ValidationErrorBody
from deepsynthbody.core.errors import ServiceError

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
ECHO_CHARS = 200  # of a value an error quotes
MESSAGE_CHARS = 600  # of a validation message (they name what is allowed, e.g. every measurement a filter takes)
MAX_ISSUES = 20  # problems a 422 lists; it counts the rest

_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = _repr.maxlong = ECHO_CHARS
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 10
_repr.maxlevel = 3


def echo(value: Any) -> Any:
    """`value` as an error may quote it: JSON-safe, at most ECHO_CHARS characters (NaN and non-UTF-8 bytes too)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if abs(value) < 10**60 else _cut(_repr.repr(value))
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, bytes | bytearray):
        text = bytes(value[: 4 * ECHO_CHARS]).decode("utf-8", errors="replace")
        if len(text) > ECHO_CHARS or len(value) > 4 * ECHO_CHARS:
            return f"{text[:ECHO_CHARS]}… ({len(value)} bytes)"
        return text
    if not isinstance(value, str):
        text = _repr.repr(value)
        if len(text) <= ECHO_CHARS and "..." not in text and _plain_json(value):
            return value  # a small list or object, quoted as it came
        value = text
    return _cut(value)


def _plain_json(value: Any) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain_json(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain_json(v) for v in value)
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, str | int | bool)


def _cut(text: str, limit: int = ECHO_CHARS) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def error_response(status: int, message: str, headers: dict[str, str] | None = None, detail: str | None = None,
                   **extra: Any) -> JSONResponse:
    body = {"message": message, "detail": message if detail is None else detail, **extra}
    return JSONResponse(body, status_code=status, headers=headers)


def _hint(exc: ServiceError) -> str | None:
    """What to do about a domain error, from what it carries."""
    details = exc.details
    if exc.hint:
        return exc.hint
    if "available" in details:
        return "`available` lists the body systems and their subcategories; GET /models shows their models"
    if "versions" in details:
        return f"installed versions: {', '.join(map(str, details['versions']))} (omit `version` for the latest)"
    if "models" in details:
        return f"models here: {', '.join(map(str, details['models']))} (omit `model` for {details['models'][0]})"
    return None


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    if exc.status_code >= 500:
        log.error("%s %s: %s", request.method, request.url.path, exc.message)
        return error_response(exc.status_code, "internal error; see the server log")
    hint = _hint(exc)
    body = {"message": f"{exc.message}; {hint}" if hint else exc.message, "detail": exc.message, **exc.details}
    return JSONResponse(jsonable_encoder(body), status_code=exc.status_code)


def _issue(error: dict[str, Any]) -> dict[str, Any]:
    # a check of ours that raised ValueError: its words are the message (pydantic puts "Value error, " before them
    # and the exception's repr in `ctx`, which says nothing more)
    own = error.get("type") == "value_error"
    msg = str(error.get("msg", ""))
    msg = _cut(msg.removeprefix("Value error, ") if own else msg, MESSAGE_CHARS)
    raw = error.get("input")
    if isinstance(raw, float) and not math.isfinite(raw):
        msg += " (NaN and Infinity are not JSON numbers)"
    issue = {
        "loc": [p if isinstance(p, int) else echo(str(p)) for p in error.get("loc", ())],
        "msg": msg,
        "type": str(error.get("type", "")),
        "input": echo(error.get("input")),
    }
    if error.get("ctx") and not own:
        issue["ctx"] = {str(k): echo(v) for k, v in error["ctx"].items()}
    return issue


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    issues = [_issue(e) for e in errors[:MAX_ISSUES]]
    summary = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in issues)
    if len(errors) > MAX_ISSUES:
        summary += f"; and {len(errors) - MAX_ISSUES} more problems"
    return JSONResponse({"detail": issues, "message": f"fix the request: {summary}"}, status_code=422)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own errors: no route (404), a method the route lacks (405), and any other HTTPException."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and exc.detail == "There was an error parsing the body":  # FastAPI's, for non-UTF-8
        return await _validation_error(request, RequestValidationError(
            [{"loc": ("body",), "msg": "the body is not JSON (UTF-8 text)", "type": "json_invalid", "input": None}]))
    headers = dict(exc.headers or {})
    path = echo(request.url.path)
    if exc.status_code == 404 and exc.detail == "Not Found":
        message = f"no such route: {request.method} {path}; GET /docs lists the routes"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {path}; use {headers.get('allow', headers.get('Allow', 'another method'))}"
    else:
        message = str(exc.detail)
    return error_response(exc.status_code, message, headers=headers or None, detail=str(exc.detail))


async def _redis_down(request: Request, exc: Exception) -> JSONResponse:
    log.warning("Redis unreachable during %s %s: %s", request.method, request.url.path, exc)
    return error_response(503, "the job queue (Redis) is unreachable; nothing was queued, retry later",
                          headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


_WRITE_REFUSALS = {  # Redis's error prefixes for "cannot write now", and what they mean
    "MISCONF": "the job queue (Redis) cannot save to its disk (full or unwritable) and refuses writes",
    "OOM": "the job queue (Redis) is out of memory (maxmemory) and refuses writes",
    "READONLY": "the job queue (Redis) is a read-only replica and refuses writes",
    "MASTERDOWN": "the job queue (Redis) lost its primary and refuses writes",
    "NOREPLICAS": "the job queue (Redis) has too few replicas and refuses writes",
}


def redis_write_refusal(exc: redis.exceptions.ResponseError) -> str | None:
    """What a Redis error means when it says Redis cannot take writes now (a full disk, maxmemory, a replica);
    None for any other error."""
    if isinstance(exc, redis.exceptions.OutOfMemoryError):
        return _WRITE_REFUSALS["OOM"]
    if isinstance(exc, redis.exceptions.ReadOnlyError):
        return _WRITE_REFUSALS["READONLY"]
    text = str(exc).split(" of pipeline caused error: ", 1)[-1]  # how redis-py reports a command in a pipeline
    code = getattr(exc, "status_code", None) or (text.split(maxsplit=1) or [""])[0]  # redis-py strips some codes
    return _WRITE_REFUSALS.get(str(code).upper())


async def _redis_error(request: Request, exc: Exception) -> JSONResponse:
    """An error answer from Redis: a refusal to write is an outage (503), anything else a bug (500)."""
    assert isinstance(exc, redis.exceptions.ResponseError)
    refusal = redis_write_refusal(exc)
    if refusal is None:
        log.error("%s %s: Redis answered %s", request.method, request.url.path, exc, exc_info=exc)
        return error_response(500, "internal error; see the server log")
    log.warning("Redis refuses writes during %s %s: %s", request.method, request.url.path, exc)
    return error_response(503, f"{refusal}; nothing was done, retry later", headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


def install(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for exc_type in (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.BusyLoadingError):
        app.add_exception_handler(exc_type, _redis_down)
    app.add_exception_handler(redis.exceptions.ResponseError, _redis_error)


_DESCRIPTIONS = {
    401: "No API key, or one that is wrong or revoked: send `Authorization: Bearer KEY`",
    403: "The key may not do this",
    408: "The request body stopped arriving (DSB_BODY_TIMEOUT seconds without data)",
    413: "The request body is larger than DSB_MAX_BODY_BYTES",
    429: "A limit of the key was reached: the message names it and its value; retry after Retry-After seconds",
    507: "The results' disk budget (DSB_RESULTS_MAX_BYTES) would be exceeded: the message has the numbers",
    404: "Not found: the message says what does not exist",
    409: "Conflict with the job's state: the message says what happened",
    415: "The body is not JSON: send `Content-Type: application/json`",
    422: "Invalid body: the message says what to fix",
    503: "The job queue (Redis) is unreachable; nothing was done, retry after Retry-After seconds",
}


def responses(*statuses: int, descriptions: dict[int, str] | None = None) -> dict[int | str, dict[str, Any]]:
    """OpenAPI declarations of the errors a route answers, in the one error shape."""
    descriptions = descriptions or {}
    declared: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entry: dict[str, Any] = {
            "model": ValidationErrorBody if status == 422 else ErrorBody,
            "description": descriptions.get(status, _DESCRIPTIONS[status]),
        }
        if status in (429, 503):
            entry["headers"] = {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}}
        elif status == 401:
            entry["headers"] = {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}}
        declared[status] = entry
    return declared
