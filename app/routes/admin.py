"""API keys over HTTP, for admins: create (the key is shown once), list, revoke."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body

from app.auth import CallerDep
from app.deps import RedisDep
from app.errors import responses
from app.schemas import KeyCreate, KeyCreated, KeyList, KeyPublic
from deepsynthbody.core import keys
from deepsynthbody.core.keys import Caller, Forbidden

router = APIRouter(prefix="/admin/keys", tags=["admin"])

_ADMIN_ONLY = {403: "The key is not an admin's: only admin keys manage keys"}
_EXAMPLES = {
    "limited": {"summary": "A lab's key with limits",
                "value": {"name": "cardiology lab", "samples_per_day": 100000, "max_active_jobs": 4}},
    "admin": {"summary": "An operator's key", "value": {"name": "ops", "admin": True}},
    "contributor": {"summary": "A researcher's key that may upload models", "value": {"name": "lab", "contributor": True}},
}


def _admin(caller: Caller) -> None:
    if not caller.admin:
        raise Forbidden(f"key {caller.name!r} is not an admin key; only admin keys manage keys",
                        hint="ask an operator (`deepsynthbody keys create --admin`)")


@router.post("", status_code=201, response_model=KeyCreated, summary="Create an API key (shown once)",
             responses=responses(403, 422, 503, descriptions=_ADMIN_ONLY))
def create_key(body: Annotated[KeyCreate, Body(openapi_examples=_EXAMPLES)], caller: CallerDep, redis: RedisDep) -> KeyCreated:
    _admin(caller)
    key, info = keys.create(redis, body.name, body.samples_per_day, body.max_active_jobs, body.admin, body.contributor)
    return KeyCreated(key=key, **info.as_dict())


@router.get("", response_model=KeyList, summary="List API keys (never the keys themselves)",
            responses=responses(403, 503, descriptions=_ADMIN_ONLY))
def list_keys(caller: CallerDep, redis: RedisDep) -> KeyList:
    _admin(caller)
    return KeyList(keys=[KeyPublic(**info.as_dict()) for info in keys.list_keys(redis)])


@router.delete("/{key_id}", response_model=KeyPublic, summary="Revoke an API key: refused from its next request on",
               responses=responses(403, 404, 503, descriptions={**_ADMIN_ONLY, 404: "No key with that id"}))
def revoke_key(key_id: str, caller: CallerDep, redis: RedisDep) -> KeyPublic:
    _admin(caller)
    return KeyPublic(**keys.revoke(redis, key_id).as_dict())
