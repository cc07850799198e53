"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Worker

from app.deps import RedisDep, StoreDep
from app.schemas import NotReady, Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The API process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Redis reachable, a worker alive, models loaded; 503 with reasons otherwise",
            response_model=Readiness,
            responses={503: {"model": NotReady, "description": "Not ready: `problems` says what is missing"}})
def readyz(redis: RedisDep, store: StoreDep) -> JSONResponse:
    checks: dict[str, object] = {}
    problems: list[str] = []
    try:
        redis.ping()
        workers = len(Worker.all(connection=redis))
        checks["redis"] = "ok"
        checks["workers"] = workers
        if workers == 0:
            problems.append("no worker is alive: start one with `deepsynthbody worker`")
    except (RedisConnectionError, RedisTimeoutError) as exc:
        checks["redis"] = f"unreachable: {exc}"
        problems.append("Redis is unreachable")
    models = [e.manifest.key for e in store.entries()]
    checks["models"] = models
    if not models:
        problems.append("the model store is empty: run `deepsynthbody models build`")
    body = {"ready": not problems, "checks": checks, "problems": problems}
    if problems:
        return JSONResponse(body | {"message": f"not ready: {'; '.join(problems)}"}, status_code=503)
    return JSONResponse(body)
