"""NDJSON of a job's samples, read from its samples array as the workers fill it."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import orjson
from redis import Redis

from app import job_views
from app.schemas import JobState
from deepsynthbody.jobs import JobPaths
from model_store.store import ModelStore
from workers.encoders.records import line

POLL_SECONDS = 0.1


def ndjson(redis: Redis, store: ModelStore, paths: JobPaths, job_id: str) -> Iterator[bytes]:
    """Lines for samples 0..N-1 in order; waits for each batch; ends with an error line if the job fails."""
    job = job_views.fetch(redis, job_id)
    spec = job_views.spec(job)
    output = store.get(spec["model_id"], spec["model_version"]).manifest.output
    names = output.channel_names(spec["params"]) if output.kind == "signal" else list(output.channels)
    sent, total = 0, spec["num_samples"]
    samples: np.ndarray | None = None
    while sent < total:
        job = job_views.fetch(redis, job_id)
        status = job_views.state(job)
        if status in (JobState.failed, JobState.canceled):
            yield orjson.dumps({"error": job_views.error(job) or f"job {status.value}", "status": status.value}) + b"\n"
            return
        done = job_views.progress(job).done
        if done > sent and paths.samples.exists():
            if samples is None:
                samples = np.load(paths.samples, mmap_mode="r")
            for index in range(sent, done):
                yield line(output, names, spec["seed"], index, samples[index])
            sent = done
        else:
            time.sleep(POLL_SECONDS)
