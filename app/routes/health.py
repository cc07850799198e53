"""Liveness and readiness probes.

`/readyz` answers within `READY_DEADLINE_SECONDS` whatever state Redis and the disk are in: its checks run on
threads of their own (a thread pool exhausted by other requests does not delay it), against a Redis client
with short socket timeouts and no retries, and a check that takes longer is reported as such.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import anyio
import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry
from rq import Queue, Worker
from rq.serializers import JSONSerializer

from app.deps import SettingsDep, StoreDep
from app.errors import redis_write_refusal
from app.schemas import NotReady, Readiness
from deepsynthbody.core import disk
from deepsynthbody.core.settings import Settings
from workers.heartbeat import LIVE_SECONDS

router = APIRouter(tags=["health"])

READY_DEADLINE_SECONDS = 4.0
PROBE_KEY = "deepsynthbody:readyz"  # written (and expiring) by each probe: Redis must accept writes
_limiter: anyio.CapacityLimiter | None = None


@router.get("/healthz", summary="The API process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Redis reachable and writable, a worker alive, disk space, models loaded; "
            "503 with reasons otherwise",
            response_model=Readiness,
            responses={503: {"model": NotReady, "description": "Not ready: `problems` says what is missing"}})
async def readyz(request: Request, settings: SettingsDep, store: StoreDep) -> JSONResponse:
    global _limiter
    _limiter = _limiter or anyio.CapacityLimiter(2)
    redis = _probe_client(request, settings)
    checks: dict[str, Any] = {}
    problems: list[str] = []
    with anyio.move_on_after(READY_DEADLINE_SECONDS) as scope:
        checks, problems = await anyio.to_thread.run_sync(_check, redis, settings, limiter=_limiter,
                                                          abandon_on_cancel=True)
    if scope.cancelled_caught:
        problems = [f"the readiness checks took over {READY_DEADLINE_SECONDS:g} s (Redis or the data dir's disk "
                    "does not answer)"]
    models = [e.manifest.key for e in store.entries()]
    checks["models"] = models
    if not models:
        problems.append("the model store is empty: run `deepsynthbody models build`")
    body = {"ready": not problems, "checks": checks, "problems": problems}
    if problems:
        message = f"not ready: {'; '.join(problems)}"
        return JSONResponse(body | {"message": message, "detail": message}, status_code=503)
    return JSONResponse(body)


def _probe_client(request: Request, settings: Settings) -> Redis:
    """A Redis client for the probes only: 1 s to connect, 2 s per command, no retries."""
    client = getattr(request.app.state, "readiness_redis", None)
    if client is None:
        client = Redis.from_url(str(settings.redis_url), socket_connect_timeout=1, socket_timeout=2,
                                retry=Retry(NoBackoff(), 0))
        request.app.state.readiness_redis = client
    return client


def _check(redis: Redis, settings: Settings) -> tuple[dict[str, Any], list[str]]:
    checks: dict[str, Any] = {}
    problems: list[str] = []
    try:
        _check_redis(redis, settings, checks, problems)
    except (RedisConnectionError, RedisTimeoutError) as exc:
        checks["redis"] = f"unreachable: {exc}"
        problems.append("Redis is unreachable")
    except RedisError as exc:
        checks["redis"] = f"error: {exc}"
        problems.append(f"Redis answers with an error: {exc}")
    _check_disk(settings, checks, problems)
    return checks, problems


def _check_redis(redis: Redis, settings: Settings, checks: dict[str, Any], problems: list[str]) -> None:
    try:
        redis.set(PROBE_KEY, "1", px=60_000)
        checks["redis"] = "ok"
    except ResponseError as exc:
        refusal = redis_write_refusal(exc)
        if refusal is None:
            raise
        checks["redis"] = f"refuses writes: {exc}"
        problems.append(refusal)
    seconds, microseconds = redis.time()
    now = datetime.fromtimestamp(seconds + microseconds / 1e6, UTC)
    workers = Worker.all(queue=Queue(settings.queue, connection=redis, serializer=JSONSerializer),
                         serializer=JSONSerializer)
    live, silent = [], []
    for worker in workers:
        beat = worker.last_heartbeat
        age = (now - (beat if beat.tzinfo else beat.replace(tzinfo=UTC))).total_seconds() if beat else None
        if age is not None and age < LIVE_SECONDS:
            live.append(worker.name)
        else:
            silent.append(f"{worker.name} (last heartbeat {'never' if age is None else f'{age:.0f} s ago'})")
    checks["workers"] = len(live)
    if silent:
        checks["silent_workers"] = silent
    if not live:
        gone = f"; registered but silent (killed or stopped): {', '.join(silent)}" if silent else ""
        problems.append(f"no worker is alive on queue {settings.queue!r}: start one with `deepsynthbody worker`{gone}")


def _check_disk(settings: Settings, checks: dict[str, Any], problems: list[str]) -> None:
    try:
        free = disk.free_bytes(settings.data_dir)
    except OSError as exc:
        checks["disk"] = f"unreadable: {exc.strerror}"
        problems.append(f"the data dir's file system cannot be read ({exc.strerror})")
        return
    checks["disk"] = {"free_bytes": free, "min_free_bytes": settings.min_free_bytes}
    if free < settings.min_free_bytes:
        problems.append(f"the data dir's disk is almost full: {free:,} bytes free, below DSB_MIN_FREE_BYTES = "
                        f"{settings.min_free_bytes:,}; free space or move the data dir")
