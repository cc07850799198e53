"""FastAPI dependencies, as Annotated aliases the routes declare.

All async: they only read app state, and FastAPI would run a plain function in its thread pool (a thread
hop per dependency per request, measured as a large part of the enqueue latency under load).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from redis import Redis

from deepsynthbody.settings import Settings
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
