"""Models contributed over HTTP: a contributor uploads one (POST /models) and reads what became of it
(/contributions); an admin lists the pending ones, approves (served at once) or rejects them (/admin/contributions).

The unpacking, the checks and the installation are model_store.contributions' (no FastAPI there); this module
reads the upload into a file, checks who may do what, and shapes the answers.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from app.auth import CallerDep
from app.errors import responses
from app.schemas import ErrorBody
from deepsynthbody.core.errors import UnsupportedMediaType
from deepsynthbody.core.keys import Caller, Forbidden
from model_store.contributions import Contribution, ContributionInvalid, Contributions

router = APIRouter(tags=["contributions"])
admin_router = APIRouter(prefix="/admin/contributions", tags=["admin"])

ARCHIVE_TYPES = ("application/zip", "application/gzip")
UPLOAD_CHUNK = 1 << 20


class ContributedModel(BaseModel):
    id: str
    name: str
    category: str
    subcategory: str
    version: int = Field(description="The version its manifest names; approval installs it as the next free one")


class ContributionPublic(BaseModel):
    """A contributed model and what became of it."""

    id: str = Field(description="32 hexadecimal characters")
    state: Literal["pending", "approved", "rejected"] = Field(
        description="pending: awaiting an admin, not served; approved: served (`installed_version`); rejected: see "
        "`reason`")
    owner: dict[str, str] = Field(description="The key that sent it: its id and name")
    model: ContributedModel
    created: str
    decided: str | None = Field(description="When an admin approved or rejected it")
    decided_by: dict[str, str] | None = Field(description="The admin key that decided")
    reason: str | None = Field(description="Why it was rejected")
    installed_version: int | None = Field(description="The version it is served as, once approved")
    links: dict[str, str]


class ContributionList(BaseModel):
    contributions: list[ContributionPublic]


class ContributionRefused(ErrorBody):
    """A 422 of POST /models: `problems` has every problem, one line each (as `deepsynthbody models validate`)."""

    problems: list[str] = Field(description="Every problem found, one line each")


class Rejection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=2000, description="Why: the contributor reads it")


def _public(record: Contribution) -> ContributionPublic:
    links = {"self": f"/contributions/{record.id}"}
    if record.state == "approved":
        links["model"] = f"/models/{record.model['category']}/{record.model['subcategory']}"
    return ContributionPublic(**record.as_dict(), links=links)


async def get_contributions(request: Request) -> Contributions:
    state = request.app.state
    if getattr(state, "contributions", None) is None:
        state.contributions = Contributions(state.settings.data_dir / "contributions", state.store)
        await run_in_threadpool(state.contributions.remove_leftovers)  # once per API process
    return state.contributions


ContributionsDep = Annotated[Contributions, Depends(get_contributions)]


def _admin(caller: Caller) -> None:
    if not caller.admin:
        raise Forbidden(f"key {caller.name!r} is not an admin key; only admins review contributions",
                        hint="ask an operator (`deepsynthbody keys create --admin`)")


_UPLOAD_BODY = {
    "required": True,
    "description": "A model folder (`manifest.json`, `model.onnx`, ...) packed as .zip or .tar.gz: its files at the "
    "archive's root or in one top-level folder. At most DSB_MAX_UPLOAD_BYTES (413 beyond), unpacking to at most "
    "DSB_MAX_UPLOAD_UNPACKED_BYTES; links, special files and names outside the folder are refused.",
    "content": {media: {"schema": {"type": "string", "contentMediaType": media}} for media in ARCHIVE_TYPES},
}


@router.post(
    "/models", status_code=201, response_model=ContributionPublic, summary="Contribute a model (kept pending)",
    description="Validated like `deepsynthbody models validate` (422 lists every problem, a line each), then kept "
    "pending: nothing serves it until an admin approves it (POST /admin/contributions/{id}/approve). Needs a key "
    "allowed to contribute (`deepsynthbody keys create --contributor`) or an admin's.",
    openapi_extra={"requestBody": _UPLOAD_BODY},
    responses={**responses(403, 408, 413, 415, 503, descriptions={
        403: "The key may not contribute models", 413: "The archive is larger than DSB_MAX_UPLOAD_BYTES",
        415: "The body is not declared as an archive: send `Content-Type: application/zip` or `application/gzip`"}),
        422: {"model": ContributionRefused, "description": "The model was not accepted: `problems` says why"},
        201: {"headers": {"Location": {"description": "The contribution", "schema": {"type": "string"}}}}})
async def contribute(request: Request, caller: CallerDep, contributions: ContributionsDep) -> JSONResponse:
    if not (caller.contributor or caller.admin):
        raise Forbidden(f"key {caller.name!r} may not contribute models",
                        hint="ask an admin for a contributor key (`deepsynthbody keys create --contributor`)")
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in ARCHIVE_TYPES:
        raise UnsupportedMediaType(f"the body is declared as {media[:80] or 'nothing'!r}, not an archive",
                                   hint="send the .zip with `Content-Type: application/zip`, the .tar.gz with "
                                   "`Content-Type: application/gzip`")
    settings = request.app.state.settings
    contributions.root.mkdir(parents=True, exist_ok=True)
    upload = contributions.root / f".upload-{secrets.token_hex(8)}"
    try:
        size = 0
        with upload.open("wb") as fh:
            async for chunk in request.stream():  # BodyLimits stops it past DSB_MAX_UPLOAD_BYTES
                size += len(chunk)
                fh.write(chunk)
        if size == 0:
            raise ContributionInvalid("the body is empty", problems=[
                "the body is empty: send the archive's bytes (curl --data-binary @model.tar.gz)"])
        record = await run_in_threadpool(contributions.submit, upload, caller.owner,
                                         settings.max_upload_unpacked_bytes)
    finally:
        upload.unlink(missing_ok=True)
    public = _public(record)
    return JSONResponse(public.model_dump(), status_code=201, headers={"Location": public.links["self"]})


_NOT_YOURS = {404: "No contribution with that id among this key's"}


@router.get("/contributions", response_model=ContributionList, summary="Your contributions, newest first",
            responses=responses(503))
def my_contributions(caller: CallerDep, contributions: ContributionsDep) -> ContributionList:
    return ContributionList(contributions=[_public(c) for c in contributions.list(caller.key_id)])


@router.get("/contributions/{contribution_id}", response_model=ContributionPublic,
            summary="One of your contributions: its state, and the reason of a rejection",
            responses=responses(404, 503, descriptions=_NOT_YOURS))
def my_contribution(contribution_id: str, caller: CallerDep, contributions: ContributionsDep) -> ContributionPublic:
    return _public(contributions.get(contribution_id, owner_key_id=caller.key_id))


_ADMIN_ONLY = {403: "The key is not an admin's: only admins review contributions",
               404: "No contribution with that id", 409: "It was approved or rejected already"}


@admin_router.get("", response_model=ContributionList, summary="Contributions of every key (the pending ones first)",
                  responses=responses(403, 422, 503, descriptions=_ADMIN_ONLY))
def list_contributions(caller: CallerDep, contributions: ContributionsDep,
                       state: Annotated[Literal["pending", "approved", "rejected"] | None, Query(
                           description="Only those in this state; omitted: the pending ones")] = None,
                       ) -> ContributionList:
    _admin(caller)
    return ContributionList(contributions=[_public(c) for c in contributions.list(state=state or "pending")])


@admin_router.post("/{contribution_id}/approve", response_model=ContributionPublic,
                   summary="Approve a contribution: served at once, as the next version of its model",
                   responses=responses(403, 404, 409, 503, descriptions=_ADMIN_ONLY))
def approve(contribution_id: str, caller: CallerDep, contributions: ContributionsDep) -> ContributionPublic:
    _admin(caller)
    return _public(contributions.approve(contribution_id, caller.owner))


_REJECTION_EXAMPLES: dict[str, Any] = {
    "licence": {"summary": "A reason the contributor can act on",
                "value": {"reason": "the licence does not allow redistribution of the weights"}}}


@admin_router.post("/{contribution_id}/reject", response_model=ContributionPublic,
                   summary="Reject a contribution, with a reason its contributor reads",
                   responses=responses(403, 404, 408, 409, 413, 422, 503, descriptions=_ADMIN_ONLY))
def reject(contribution_id: str, body: Annotated[Rejection, Body(openapi_examples=_REJECTION_EXAMPLES)],
           caller: CallerDep, contributions: ContributionsDep) -> ContributionPublic:
    _admin(caller)
    return _public(contributions.reject(contribution_id, caller.owner, body.reason))
