"""NDJSON of a job's samples, read from its samples array as the workers fill it.

A stream costs nothing while it waits and nothing once its client is gone: it is an async generator that
sleeps on the event loop between polls (no thread is held while a job is queued, however long), does its
Redis reads and file reads off the loop in short calls that take at most `THREADS` of the thread pool
between all streams, and is cancelled by Starlette when the client hangs up (StreamingResponse listens
for the disconnect while it iterates).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar

import anyio
import anyio.to_thread
import orjson
from redis import Redis

from app import job_views
from app.schemas import JobState
from deepsynthbody.core.jobs import JobPaths
from deepsynthbody.core.samples_file import SamplesFile
from model_store.manifest import ImageOutput, SignalOutput
from model_store.store import ModelStore
from workers.encoders.records import line

POLL_SECONDS = 0.1  # between polls while samples are coming
MAX_POLL_SECONDS = 0.5  # a job that makes no progress (queued) is polled less and less often, up to this
READ_ROWS = 64  # samples read from disk and encoded in one call off the loop
THREADS = 4  # of the thread pool's 40, at most this many run streams' reads at once

_T = TypeVar("_T")
_limiter: anyio.CapacityLimiter | None = None


async def _off_loop(func: Callable[..., _T], *args: object) -> _T:
    """`func(*args)` in a worker thread, at most THREADS of them for all streams together."""
    global _limiter
    if _limiter is None:
        _limiter = anyio.CapacityLimiter(THREADS)
    return await anyio.to_thread.run_sync(func, *args, limiter=_limiter)


def _lines(samples: SamplesFile, output: SignalOutput | ImageOutput, names: list[str], seed: int, start: int,
           count: int, measured: Path | None = None) -> bytes:
    """`measured`: an annotated job's measurements folder (written by the workers before a sample counts as done)."""
    rows = samples.read(start, count)
    return b"".join(line(output, names, seed, start + offset, row,
                         orjson.loads((measured / f"{start + offset}.json").read_bytes()) if measured else None)
                    for offset, row in enumerate(rows))


async def ndjson(redis: Redis, store: ModelStore, paths: JobPaths, job_id: str) -> AsyncIterator[bytes]:
    """Lines for samples 0..N-1 in order, each once it is written; an error line ends a failed job's stream."""
    view = await _off_loop(job_views.fetch, redis, job_id)
    spec = view.spec
    output = store.get(spec["model_id"], spec["model_version"]).manifest.output
    names = output.channel_names(spec["params"])
    sent, total = 0, spec["num_samples"]
    samples: SamplesFile | None = None
    delay = POLL_SECONDS
    while sent < total:
        state, ready, error = await _off_loop(_poll, redis, job_id, total)
        if state in (JobState.failed, JobState.canceled):
            yield orjson.dumps({"error": error or f"job {state.value}", "status": state.value}) + b"\n"
            return
        if ready > sent and await _off_loop(paths.samples.exists):
            samples = samples or await _off_loop(SamplesFile, paths.samples)
            for start in range(sent, ready, READ_ROWS):
                count = min(READ_ROWS, ready - start)
                yield await _off_loop(_lines, samples, output, names, spec["seed"], start, count,
                                      paths.measurements if spec.get("annotate") else None)
            sent = ready
            delay = POLL_SECONDS
        else:
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, MAX_POLL_SECONDS)


def _poll(redis: Redis, job_id: str, total: int) -> tuple[JobState, int, str | None]:
    """The job's state, how many samples from the first on are written, and its error."""
    view = job_views.fetch(redis, job_id)
    state = view.state
    if state in (JobState.failed, JobState.canceled):
        return state, 0, view.error
    return state, total if state is JobState.finished else view.ready_prefix(), None
