"""Response schemas, named by role."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class JobState(str, Enum):
    queued = "queued"
    started = "started"
    finished = "finished"
    failed = "failed"
    canceled = "canceled"


class JobLinks(BaseModel):
    self: str
    result: str
    stream: str
    events: str  # Server-Sent Events of its progress (app.job_progress)


class DownloadLink(BaseModel):
    url: str = Field(description="The archive's path with its `link` parameter: GET or HEAD it with no "
                     "Authorization header (a browser's download manager, a wget on another host)")
    expires_at: datetime | None = Field(description="When the link stops opening the archive (a download already "
                                        "under way finishes); null when the service runs without keys and the path "
                                        "needs none")


class ModelRef(BaseModel):
    id: str
    version: int


class JobCreated(BaseModel):
    job_id: str
    status: JobState
    seed: int
    model: ModelRef
    links: JobLinks


class Progress(BaseModel):
    done: int
    total: int


class JobPublic(BaseModel):
    job_id: str
    status: JobState
    progress: Progress
    seed: int
    model: ModelRef
    format: str
    request: dict[str, Any]
    created_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    execution_provider: str | None
    error: str | None
    links: JobLinks


class ModelCard(BaseModel):
    id: str
    name: str
    version: int
    versions: list[int]
    category: str
    subcategory: str
    description: str
    output: dict[str, Any]
    parameters: dict[str, Any]
    formats: list[str]
    license: str
    citations: list[dict[str, Any]]
    sha256: str
    precisions: dict[str, str]  # request `precision` value -> how it differs from fp32
    provenance: dict[str, Any]
    generate: str
    request_example: dict[str, Any]
    # what `"annotate": true` measures and how, and each measurement's distribution (what `"where"` can ask for)
    measurements: dict[str, Any] | None = None


class SubcategoryPublic(BaseModel):
    name: str
    models: list[ModelCard]


class BodySystemPublic(BaseModel):
    name: str
    subcategories: list[SubcategoryPublic]


class Catalog(BaseModel):
    body_systems: list[BodySystemPublic]


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, Any]
    problems: list[str]


class NotReady(Readiness):
    """/readyz when something is missing: `problems` lists it, `message` says it in one sentence."""

    message: str
    detail: str = Field(description="The same words as `message`")


class ErrorBody(BaseModel):
    """Every error but a 422: `message` says what happened and what to do; `detail` holds the same words (older
    clients read it); some errors add fields (`available`, `versions`, `status`, `progress`, `error`)."""

    model_config = ConfigDict(extra="allow")
    message: str
    detail: str


class ValidationIssue(BaseModel):
    loc: list[str | int] = Field(description="Where: 'body', then the field")
    msg: str
    type: str
    input: Any = Field(None, description="What was sent there, shortened")
    ctx: dict[str, Any] | None = None


class ValidationErrorBody(BaseModel):
    """A 422: `message` lists every problem in one sentence, `detail` one object per problem."""

    message: str
    detail: list[ValidationIssue]


class KeyCreate(BaseModel):
    """POST /admin/keys: a new API key. Limits omitted: the settings' defaults (DSB_DEFAULT_...)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64, description="Who or what uses the key (logged; never the key)")
    samples_per_day: int | None = Field(None, ge=1, description="Samples per UTC day; omitted: the default")
    max_active_jobs: int | None = Field(None, ge=1, description="Queued + running requests; omitted: the default")
    admin: bool = Field(False, description="May manage keys and see every job")
    contributor: bool = Field(False, description="May upload models (POST /models); admins may too")

    @field_validator("name")
    @classmethod
    def _valid_name(cls, name: str) -> str:  # a 422 like every other bad field (it answered ErrorBody's string detail)
        from deepsynthbody.core.keys import BadKeyRequest, check_name

        try:
            return check_name(name)
        except BadKeyRequest as exc:
            raise ValueError(f"{exc.message}; {exc.hint}") from None


class KeyPublic(BaseModel):
    """A key's record: never the key itself."""

    id: str
    name: str
    admin: bool
    samples_per_day: int | None = Field(description="null: the default (DSB_DEFAULT_SAMPLES_PER_DAY) or unlimited")
    max_active_jobs: int | None = Field(description="null: the default (DSB_DEFAULT_MAX_ACTIVE_JOBS) or unlimited")
    created: str
    last_used: str | None
    contributor: bool = Field(False, description="May upload models (POST /models)")


class KeyCreated(KeyPublic):
    key: str = Field(description="The key: shown this once, stored only as its sha256")


class KeyList(BaseModel):
    keys: list[KeyPublic]


class JobList(BaseModel):
    """GET /jobs: the caller's jobs (an admin's: every job), newest first."""

    jobs: list[JobPublic]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page")
