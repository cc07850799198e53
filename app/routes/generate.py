"""Generation requests: validated against the model's manifest, enqueued for the workers by name."""

from __future__ import annotations

import os
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from app import request_models
from app.job_views import links
from app.schemas import JobCreated, JobState, ModelRef
from deepsynthbody.jobs import JobSpec, plan_chunks
from deepsynthbody.settings import Settings
from model_store.store import ModelEntry, ModelStore

MAX_SERVICE_SEED = 2**53 - 1  # seeds the service picks stay exact in every JSON client
PATH_PARAMETERS = [
    {"name": "category", "in": "path", "required": True, "schema": {"type": "string"},
     "description": "Body system, e.g. cardiovascular (GET /models lists them)"},
    {"name": "subcategory", "in": "path", "required": True, "schema": {"type": "string"},
     "description": "Subcategory of the body system, e.g. ecg"},
]


def openapi_request_body(store: ModelStore, max_samples: int) -> dict[str, Any]:
    """Document one request schema and one example per installed model (the route itself is generic)."""
    latest: dict[str, ModelEntry] = {}
    for entry in store.entries():
        latest[entry.manifest.id] = entry
    schemas = [request_models.request_model(e.manifest, max_samples).model_json_schema() for e in latest.values()]
    examples = {
        f"{e.manifest.category}/{e.manifest.subcategory} ({e.manifest.id})": {
            "summary": e.manifest.name,
            "value": request_models.example(e.manifest),
        }
        for e in latest.values()
    }
    schema: dict[str, Any] = {"oneOf": schemas} if schemas else {"type": "object"}
    body = {"required": True, "content": {"application/json": {"schema": schema, "examples": examples}}}
    return {"parameters": PATH_PARAMETERS, "requestBody": body}


def _raw_selectors(body: bytes) -> tuple[str | None, int | None]:
    """`model` and `version` as sent, to pick the manifest the rest of the body is checked against."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, None  # the full validation below reports the JSON error
    if not isinstance(document, dict):
        return None, None
    model, version = document.get("model"), document.get("version")
    return (model if isinstance(model, str) else None, version if type(version) is int else None)


def _new_job_id_and_seed() -> tuple[str, int]:
    """An unguessable job id (it is what lets a client read the results) and a seed, from one system call."""
    token = os.urandom(24)
    return token[:16].hex(), int.from_bytes(token[16:]) & MAX_SERVICE_SEED  # 53 random bits


def _validate(entry: ModelEntry, settings: Settings, body: bytes) -> Any:
    try:
        return request_models.parse(entry.manifest, settings.max_samples, body)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from None


def make_router(store: ModelStore, max_samples: int) -> APIRouter:
    router = APIRouter(tags=["generate"])

    @router.post(
        "/generate/{category}/{subcategory}",
        status_code=202,
        response_model=JobCreated,
        summary="Queue a generation job",
        description="Validated against the model's manifest; returns the job id at once. "
        "Poll /jobs/{id}, then download /jobs/{id}/result or read /jobs/{id}/stream.",
        openapi_extra=openapi_request_body(store, max_samples),
        responses={404: {"description": "Unknown body system, subcategory, model or version"},
                   422: {"description": "Invalid body: the message says what to fix"},
                   503: {"description": "Job queue unreachable; retry after Retry-After seconds"}},
    )
    async def generate(request: Request) -> Response:
        # The busiest route takes the Request alone and returns its response as bytes: FastAPI's parameter
        # resolution and response-model validation cost more per request than the rest of this handler
        # (measured under 50 concurrent clients). The path parameters and the response are documented above.
        state = request.app.state
        store, settings, enqueuer = state.store, state.settings, state.enqueuer
        body = await request.body()
        model, version = _raw_selectors(body)
        entry = store.resolve(request.path_params["category"], request.path_params["subcategory"], model, version)
        validated = _validate(entry, settings, body)
        manifest = entry.manifest
        job_id, service_seed = _new_job_id_and_seed()
        seed = validated.seed if validated.seed is not None else service_seed
        params = {name: getattr(validated, name) for name in manifest.parameters}
        spec = JobSpec(
            job_id=job_id,
            model_id=manifest.id,
            model_version=manifest.version,
            num_samples=validated.num_samples,
            seed=seed,
            format=validated.format,
            params=params,
            precision=getattr(validated, "precision", "fp32"),
            request=validated.model_dump() | {"seed": seed, "model": manifest.id, "version": manifest.version},
            chunks=plan_chunks(validated.num_samples, settings.chunk_size),
        )
        await enqueuer.enqueue(spec)
        created = JobCreated(job_id=job_id, status=JobState.queued, seed=seed,
                             model=ModelRef(id=manifest.id, version=manifest.version), links=links(job_id))
        return Response(created.model_dump_json(), status_code=202, media_type="application/json",
                        headers={"Location": f"/jobs/{job_id}"})

    return router
