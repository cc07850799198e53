"""Generation requests: validated against the model's manifest, enqueued for the workers by name."""

from __future__ import annotations

import contextlib
import os
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from redis import Redis

from app import request_models
from app.errors import echo, error_response, responses
from app.job_views import links
from app.schemas import JobCreated, JobState, ModelRef
from deepsynthbody.core import quotas
from deepsynthbody.core.errors import UnsupportedMediaType
from deepsynthbody.core.jobs import JobSpec, candidate_chunks, plan_candidate_chunks, plan_chunks
from deepsynthbody.core.keys import Caller
from deepsynthbody.core.settings import Settings
from model_store import distributions, sizes
from model_store.manifest import Manifest
from model_store.store import ModelEntry

MAX_SERVICE_SEED = 2**53 - 1  # seeds the service picks stay exact in every JSON client


def _is_json(content_type: str) -> bool:
    """application/json or application/<anything>+json, with or without parameters (charset=utf-8)."""
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def _check_content_type(request: Request) -> None:
    """415 unless the body is sent as JSON; a body sent with no content type at all is read as JSON. Scans the raw
    headers: building Starlette's Headers costs more than the rest of this check (measured, 3 us)."""
    for name, value in request.scope["headers"]:
        if name == b"content-type":
            if not value or value == b"application/json" or _is_json(value.decode("latin-1")):
                return
            raise UnsupportedMediaType(
                f"the body was sent as {echo(value.decode('latin-1'))}, not JSON",
                hint="send it as JSON with the header `Content-Type: application/json` (curl: -H 'content-type: application/json')")


def _raw_selectors(body: bytes) -> tuple[str | None, int | None]:
    """`model` and `version` as sent, to pick the manifest the rest of the body is checked against."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, None  # the full validation below reports the JSON error
    if not isinstance(document, dict):
        return None, None
    model, version = document.get("model"), document.get("version")
    if type(version) is float and version.is_integer():
        version = int(version)  # as validation reads it
    return (model if isinstance(model, str) else None, version if type(version) is int else None)


def _new_job_id_and_seed() -> tuple[str, int]:
    """An unguessable job id (it is what lets a client read the results) and a seed, from one system call."""
    token = os.urandom(24)
    return token[:16].hex(), int.from_bytes(token[16:]) & MAX_SERVICE_SEED  # 53 random bits


def _filtered(manifest: Manifest, where: dict[str, Any], num_samples: int, chunk_size: int) -> dict[str, Any]:
    """A filtered job's bounds and candidate budget. A budget within one chunk runs as one job; a larger one is cut
    into chunks of candidates that workers search in parallel (`deepsynthbody.core.jobs.candidate_chunks`)."""
    bounds = {name: [r.min, r.max] for name, r in where.items()}
    document = distributions.for_manifest(manifest)
    expected = distributions.expected_acceptance(document, bounds) if document else 1.0
    budget = distributions.candidate_budget(num_samples, expected)
    chunks = plan_candidate_chunks(budget, chunk_size) if budget > chunk_size else [(0, num_samples)]
    return {"where": bounds, "candidate_budget": budget, "chunks": chunks}


def _validate(entry: ModelEntry, settings: Settings, body: bytes) -> Any:
    try:
        return request_models.parse(entry.manifest, settings.max_samples, body)
    except ValidationError as exc:
        model = request_models.request_model(entry.manifest, settings.max_samples)
        listed: set[tuple[Any, ...]] = set()  # where the fields taken have been listed: once per place
        errors = [{**e, "loc": ("body", *e["loc"])} | _unknown_field(model, e, listed)
                  | _too_many(e, settings.max_samples) for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from None


def _too_many(error: Any, max_samples: int) -> dict[str, Any]:
    """`num_samples` over the service's limit: the limit is this service's, and a larger dataset is still recipes."""
    if tuple(error["loc"]) != ("num_samples",) or error["type"] != "less_than_equal":
        return {}
    return {"msg": f"at most {max_samples} samples per request on this service (its DSB_MAX_SAMPLES); make a larger "
                   "dataset as several requests, each with a seed of its own (together, the dataset's recipe)"}


def _unknown_field(model: type[BaseModel], error: Any, listed: set[tuple[Any, ...]]) -> dict[str, Any]:
    """An unknown field's message names the nearest field and those taken there (a model's parameters are top-level
    fields); the list once per place (`listed`: the places already listed), however many unknown fields it has."""
    fields = request_models.fields_at(model, tuple(error["loc"])) if error["type"] == "extra_forbidden" else None
    if not fields:
        return {}
    place = tuple(error["loc"][:-1])
    listing = "" if place in listed else f"; the fields here are {', '.join(fields)}"
    listed.add(place)
    return {"msg": f"unknown field{request_models.did_you_mean(str(error['loc'][-1]), fields)}{listing}"}


def _budgeted(settings: Settings, manifest: Manifest, spec: JobSpec) -> int:
    files = sizes.job_bound(manifest, spec["format"], spec["num_samples"], spec["params"],
                            deflated=settings.archive_compression == "deflated", annotated=bool(spec.get("annotate")))
    # candidate chunks keep the candidates they found until the archive job has written the samples: about one more
    # copy of the samples (each chunk keeps at most num_samples; those past the first num_samples stop early)
    return files + (sizes.samples_bound(manifest, spec["num_samples"], spec["params"]) if candidate_chunks(spec) else 0)


def _count(redis: Redis, settings: Settings, caller: Caller, spec: JobSpec, manifest: Manifest) -> None:
    """The request against the results' disk budget, then against the key's limits; nothing counted if refused."""
    job_id = spec["job_id"]
    if settings.results_max_bytes:
        quotas.reserve_bytes(redis, job_id, _budgeted(settings, manifest, spec), settings.results_max_bytes)
    if caller.max_active_jobs or caller.samples_per_day:
        try:
            quotas.reserve(redis, caller.key_id, caller.max_active_jobs, caller.samples_per_day, job_id,
                           spec["num_samples"])
        except quotas.OverLimit:
            if settings.results_max_bytes:
                quotas.release_bytes(redis, job_id)
            raise


def _give_back(redis: Redis, settings: Settings, caller: Caller, spec: JobSpec) -> None:
    """What `_count` counted for a request that was not enqueued."""
    if settings.results_max_bytes:
        quotas.release_bytes(redis, spec["job_id"])
    if caller.max_active_jobs or caller.samples_per_day:
        quotas.unreserve(redis, caller.key_id, caller.samples_per_day, spec["job_id"], spec["num_samples"])


async def _admit(state: Any, caller: Caller, spec: JobSpec, manifest: Manifest) -> Response | None:  # noqa: ANN401
    """None when the request may be enqueued (and is counted), else the refusal: 507 or 429. No Redis round trip
    for a caller without limits on a service without a disk budget."""
    settings = state.settings
    if not (settings.results_max_bytes or caller.max_active_jobs or caller.samples_per_day):
        return None
    try:
        await run_in_threadpool(_count, state.redis, settings, caller, spec, manifest)
    except quotas.OverBudget as over:
        return error_response(507, over.message, needed=over.needed, reserved=over.reserved, budget=over.budget)
    except quotas.OverLimit as over:
        return error_response(429, over.message, headers={"Retry-After": str(over.retry_after)},
                              limit=over.limit, value=over.value)
    return None


def make_router() -> APIRouter:
    router = APIRouter(tags=["generate"])

    @router.post(
        "/generate/{category}/{subcategory}",
        status_code=202,
        response_model=JobCreated,
        summary="Queue a generation job",
        description="Validated against the model's manifest; returns the job id at once. "
        "Poll /jobs/{id}, then download /jobs/{id}/result or read /jobs/{id}/stream.",
        responses={202: {"headers": {"Location": {"description": "The job: /jobs/{job_id}", "schema": {"type": "string"}}}},
                   **responses(401, 404, 408, 413, 415, 422, 429, 503, 507, descriptions={
                       404: "Unknown model or version: the body lists what is installed",
                       429: "A limit of the key (active jobs, samples per UTC day, requests per second) was reached: "
                            "`limit` names it, `value` is its value; retry after Retry-After seconds"})},
    )  # documented as one path per installed subcategory, each with its own body schema (app/openapi.py)
    async def generate(request: Request) -> Response:
        # The busiest route takes the Request alone and returns its response as bytes: FastAPI's parameter
        # resolution and response-model validation cost more per request than the rest of this handler
        # (measured under 50 concurrent clients). The path parameters and the response are documented above.
        state = request.app.state
        store, settings, enqueuer = state.store, state.settings, state.enqueuer
        _check_content_type(request)
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
            annotate=getattr(validated, "annotate", False) or bool(getattr(validated, "where", None)),
            request=validated.model_dump() | {"seed": seed, "model": manifest.id, "version": manifest.version},
            chunks=plan_chunks(validated.num_samples, settings.chunk_size),
        )
        if getattr(validated, "where", None):
            spec.update(_filtered(manifest, validated.where, validated.num_samples, settings.chunk_size))
        caller = request.state.caller
        refused = await _admit(state, caller, spec, manifest)
        if refused is not None:
            return refused
        try:
            await enqueuer.enqueue(spec, caller.owner)
        except BaseException:
            with contextlib.suppress(Exception):  # Redis down: what was counted is forgotten by itself
                await run_in_threadpool(_give_back, state.redis, settings, caller, spec)
            raise
        created = JobCreated(job_id=job_id, status=JobState.queued, seed=seed,
                             model=ModelRef(id=manifest.id, version=manifest.version), links=links(job_id))
        return Response(created.model_dump_json(), status_code=202, media_type="application/json",
                        headers={"Location": f"/jobs/{job_id}"})

    return router
