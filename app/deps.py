"""FastAPI dependencies, as Annotated aliases the routes declare.

All async: they only read app state, and FastAPI would run a plain function in its thread pool (a thread
hop per dependency per request, measured as a large part of the enqueue latency under load).
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, Path, Request
from redis import Redis

from app.errors import echo
from deepsynthbody.core.errors import NotFound
from deepsynthbody.core.settings import Settings
from model_store.store import ModelStore


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_redis(request: Request) -> Redis:
    return request.app.state.redis


async def get_store(request: Request) -> ModelStore:
    return request.app.state.store


SettingsDep = Annotated[Settings, Depends(get_settings)]
RedisDep = Annotated[Redis, Depends(get_redis)]
StoreDep = Annotated[ModelStore, Depends(get_store)]


JOB_ID_PATTERN = "^[0-9a-f]{1,64}$"  # the service makes 32 of these (app.routes.generate._new_job_id_and_seed)
_JOB_ID = re.compile(JOB_ID_PATTERN[1:-1])


async def get_job_id(
    job_id: Annotated[str, Path(description="The `job_id` POST /generate/... returned: 32 lowercase hex characters",
                                json_schema_extra={"pattern": JOB_ID_PATTERN})],
) -> str:
    """Every /jobs route's id, checked before anything reads Redis: anything else is an id no job has."""
    if _JOB_ID.fullmatch(job_id) is None:
        raise NotFound(f"no job {echo(job_id)!r}: job ids are 32 lowercase hexadecimal characters, "
                       "as returned by POST /generate/{category}/{subcategory}")
    return job_id


JobIdDep = Annotated[str, Depends(get_job_id)]
