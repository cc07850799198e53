"""A job's state changes: one log line each (job id, owner's name, state), and the counts `/metrics` shows.

The API logs `queued`; the workers log `started`, `finished`, `failed`, `canceled` and `requeued` (a retry after
an error, a shutdown that hands the job back, a dead worker's job run again). Each line names the owner by the
name of the key that created the job (`meta["owner"]["name"]`, never the key; "anonymous" without one) and
carries `job_id`, `owner` and `state` as fields, which the JSON log format (`DSB_LOG_FORMAT=json`) writes out.

A worker that finishes an RQ job also adds to one small Redis hash per queue (`metrics_key`): samples made by
model, version, format and execution provider, and histograms of how long jobs ran and how long requests took from
acceptance to archive. Every API process reads the same hash when scraped, so `/metrics` says the same wherever it
is asked. Imports no FastAPI and no onnxruntime: both sides use it.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from rq.job import Job, JobStatus

from deepsynthbody.core.job_changes import job_changed
from deepsynthbody.core.jobs import ARCHIVE_TASK, CHUNK_TASK, GENERATE_TASK

log = logging.getLogger("deepsynthbody.core.jobs")

ANONYMOUS = "anonymous"
UNKNOWN = "unknown"  # the execution provider of samples counted without one
_TASKS = {GENERATE_TASK: "generate", CHUNK_TASK: "chunk", ARCHIVE_TASK: "archive"}
# seconds: an RQ job's run, and a request's time from its 202 to its archive
RUN_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0, math.inf)


def metrics_key(queue: str) -> str:
    return f"dsb:metrics:{queue}"


def owner_name(meta: Mapping[str, Any] | None) -> str:
    """The name in a job's `meta["owner"]`."""
    return name_of((meta or {}).get("owner"))


def name_of(owner: object) -> str:
    name = owner.get("name") if isinstance(owner, Mapping) else None
    return name if isinstance(name, str) and name else ANONYMOUS


def event(state: str, job_id: str, owner: str, detail: str = "", **fields: Any) -> None:
    """One line: `job ID STATE (owner NAME[, detail])`, with job_id, owner, state (and `fields`) as record fields."""
    if log.isEnabledFor(logging.INFO):
        log.info("job %s %s (owner %s%s)", job_id, state, owner, f"; {detail}" if detail else "",
                 extra={"job_id": job_id, "owner": owner, "state": state, **fields})


def queued(job_id: str, owner: Mapping[str, str] | None, label: str) -> None:
    """The API stored the request's jobs (logged once Redis has them); `owner` as in `meta["owner"]`."""
    event("queued", job_id, name_of(owner), label)


def _task(job: Job) -> str:
    return _TASKS.get(job.func_name, job.func_name)


def started(job: Job) -> None:
    event("started", job.id, owner_name(job.meta), _task(job), task=_task(job))


def requeued(job: Job, reason: str) -> None:
    job_changed(job)  # the clients following it (`deepsynthbody.core.job_changes`)
    event("requeued", job.id, owner_name(job.meta), reason, reason=reason)


def canceled(job: Job) -> None:
    event("canceled", job.id, owner_name(job.meta), "stopped on request")


def failure_handled(job: Job, error: str = "") -> None:
    """After RQ handled a failure: the job failed for good, was stopped, or was queued to be tried again."""
    job_changed(job)
    status = job.get_status(refresh=False)
    if status == JobStatus.STOPPED:
        canceled(job)
    elif status in (JobStatus.QUEUED, JobStatus.SCHEDULED):
        requeued(job, f"retry {job.number_of_retries or 0} after an error")
    else:
        last = error.strip().splitlines()[-1] if error.strip() else "no message"
        event("failed", job.id, owner_name(job.meta), last, error=last)


def orphans_handled(connection: Redis, job_ids: list[str]) -> None:
    """Jobs whose worker died, after RQ's clean-up ran them again (or failed them: out of tries)."""
    from rq.serializers import JSONSerializer

    for job in Job.fetch_many(job_ids, connection=connection, serializer=JSONSerializer):
        if job is None:
            continue
        job_changed(job)
        if job.get_status(refresh=False) in (JobStatus.QUEUED, JobStatus.SCHEDULED):
            requeued(job, "its worker died")
        elif job.get_status(refresh=False) == JobStatus.FAILED:
            event("failed", job.id, owner_name(job.meta), "its worker died on every try", error="worker died")


def finished(job: Job, queue: str) -> None:
    """The job succeeded: log it, and count its samples and its time for /metrics."""
    job_changed(job)
    task = _task(job)
    seconds = (job.ended_at - job.started_at).total_seconds() if job.started_at and job.ended_at else None
    event("finished", job.id, owner_name(job.meta), task + (f" in {seconds:.2f} s" if seconds is not None else ""),
          task=task, seconds=seconds)
    spec = job.args[0] if job.args and isinstance(job.args[0], dict) else None
    if spec is None:
        return
    samples = 0
    if task == "generate":
        samples = spec["num_samples"]
    elif task == "chunk":
        samples = spec["chunks"][job.args[1]][1]
    model, version, fmt = spec["model_id"], str(spec["model_version"]), spec["format"]
    provider = str(job.meta.get("provider") or UNKNOWN)  # what made them: a GPU worker on the CPU shows here
    latency = None
    if task in ("generate", "archive") and job.meta.get("created_at") and job.meta.get("finished_at"):
        latency = (datetime.fromisoformat(job.meta["finished_at"])
                   - datetime.fromisoformat(job.meta["created_at"])).total_seconds()
    try:
        with job.connection.pipeline(transaction=True) as pipe:
            key = metrics_key(queue)
            if samples:
                pipe.hincrby(key, _field("samples", model, version, fmt, provider), samples)
            if seconds is not None:
                _observe(pipe, key, "run", (task, model, version, fmt), seconds)
            if latency is not None:
                _observe(pipe, key, "latency", (model, version, fmt), max(latency, 0.0))
            pipe.execute()
    except RedisError as exc:  # the job is done and recorded by RQ; only its count in /metrics is lost
        log.warning("job %s: could not count it for /metrics: %s", job.id, exc)


def _field(*parts: str) -> str:
    return json.dumps(parts, separators=(",", ":"))


def _observe(pipe: Any, key: str, name: str, labels: tuple[str, ...], value: float) -> None:  # noqa: ANN401
    bucket = next(i for i, bound in enumerate(RUN_BUCKETS) if value <= bound)
    pipe.hincrby(key, _field(name, *labels, str(bucket)), 1)
    pipe.hincrbyfloat(key, _field(name + "_sum", *labels), value)


@dataclass
class Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * len(RUN_BUCKETS))  # per bucket, not cumulative
    total: float = 0.0

    def cumulative(self) -> list[tuple[str, int]]:
        running, out = 0, []
        for bound, count in zip(RUN_BUCKETS, self.counts):
            running += count
            out.append(("+Inf" if math.isinf(bound) else repr(bound), running))
        return out


@dataclass
class Recorded:
    """What the workers counted: samples by (model, version, format, execution provider); histograms by their
    labels."""

    samples: dict[tuple[str, ...], int] = field(default_factory=dict)
    run: dict[tuple[str, ...], Histogram] = field(default_factory=dict)
    latency: dict[tuple[str, ...], Histogram] = field(default_factory=dict)


def parse(fields: Mapping[bytes | str, bytes | str]) -> Recorded:
    """The hash `metrics_key` holds (as HGETALL returns it)."""
    recorded = Recorded()
    for raw_key, raw_value in fields.items():
        try:
            name, *labels = json.loads(raw_key)
            value = raw_value.decode() if isinstance(raw_value, bytes) else raw_value
            if name == "samples":  # counted before the provider was: its label says unknown
                key = tuple(labels) + (UNKNOWN,) * (4 - len(labels))
                recorded.samples[key] = recorded.samples.get(key, 0) + int(value)
            elif name in ("run", "latency"):
                _histogram(recorded, name, tuple(labels[:-1])).counts[int(labels[-1])] += int(value)
            elif name in ("run_sum", "latency_sum"):
                _histogram(recorded, name.removesuffix("_sum"), tuple(labels)).total = float(value)
        except (ValueError, TypeError, IndexError):
            continue  # a field this version does not know
    return recorded


def _histogram(recorded: Recorded, name: str, labels: tuple[str, ...]) -> Histogram:
    return getattr(recorded, name).setdefault(labels, Histogram())


def read(connection: Redis, queue: str) -> Recorded:
    return parse(connection.hgetall(metrics_key(queue)))
