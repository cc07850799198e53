"""NDJSON of a job's samples, read from its samples array as the workers fill it."""

from __future__ import annotations

import time
from collections.abc import Iterator

import orjson
from redis import Redis

from app import job_views
from app.schemas import JobState
from deepsynthbody.jobs import JobPaths
from deepsynthbody.samples_file import SamplesFile
from model_store.store import ModelStore
from workers.encoders.records import line

POLL_SECONDS = 0.1
READ_ROWS = 64  # samples read from disk at a time


def ndjson(redis: Redis, store: ModelStore, paths: JobPaths, job_id: str) -> Iterator[bytes]:
    """Lines for samples 0..N-1 in order, each once it is written; an error line ends a failed job's stream."""
    view = job_views.fetch(redis, job_id)
    spec = view.spec
    output = store.get(spec["model_id"], spec["model_version"]).manifest.output
    names = output.channel_names(spec["params"])
    sent, total = 0, spec["num_samples"]
    samples: SamplesFile | None = None
    while sent < total:
        view = job_views.fetch(redis, job_id)
        state = view.state
        if state in (JobState.failed, JobState.canceled):
            yield orjson.dumps({"error": view.error or f"job {state.value}", "status": state.value}) + b"\n"
            return
        ready = total if state is JobState.finished else view.ready_prefix()
        if ready > sent and paths.samples.exists():
            samples = samples or SamplesFile(paths.samples)
            for start in range(sent, ready, READ_ROWS):
                rows = samples.read(start, min(READ_ROWS, ready - start))
                for offset, row in enumerate(rows):
                    yield line(output, names, spec["seed"], start + offset, row)
            sent = ready
        else:
            time.sleep(POLL_SECONDS)
