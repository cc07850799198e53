"""FastAPI dependencies, as Annotated aliases the routes declare."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer

from deepsynthbody.settings import Settings
from model_store.store import ModelStore


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_redis(request: Request) -> Redis:
    return request.app.state.redis


def get_store(request: Request) -> ModelStore:
    return request.app.state.store


def get_queue(request: Request) -> Queue:
    settings: Settings = request.app.state.settings
    return Queue(settings.queue, connection=request.app.state.redis, serializer=JSONSerializer)


SettingsDep = Annotated[Settings, Depends(get_settings)]
RedisDep = Annotated[Redis, Depends(get_redis)]
StoreDep = Annotated[ModelStore, Depends(get_store)]
QueueDep = Annotated[Queue, Depends(get_queue)]
