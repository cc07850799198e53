"""Every error the API returns goes through here: domain errors, bad input, Redis outages."""

from __future__ import annotations

import logging

import redis.exceptions
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from deepsynthbody.errors import ServiceError

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    if exc.status_code >= 500:
        log.error("%s %s: %s", request.method, request.url.path, exc.message)
        return JSONResponse({"detail": "internal error; see the server log"}, status_code=exc.status_code)
    return JSONResponse(jsonable_encoder({"detail": exc.message, **exc.details}), status_code=exc.status_code)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [{k: v for k, v in e.items() if k != "url"} for e in exc.errors()]
    summary = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors)
    return JSONResponse(jsonable_encoder({"detail": errors, "message": f"fix the request: {summary}"}), status_code=422)


async def _redis_down(request: Request, exc: Exception) -> JSONResponse:
    log.warning("Redis unreachable during %s %s: %s", request.method, request.url.path, exc)
    return JSONResponse(
        {"detail": "the job queue (Redis) is unreachable; nothing was queued, retry later"},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    for exc_type in (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.BusyLoadingError):
        app.add_exception_handler(exc_type, _redis_down)
