"""Putting requests on the RQ queue: requests that arrive together are enqueued together.

Under load, many requests wait for Redis at once. Each request's job is handed to `Enqueuer.enqueue`, which
returns when the job is stored; jobs that arrive while a batch is being written go into the next batch, one
RQ `enqueue_many` in one Redis transaction (MULTI/EXEC: all or none of a batch is stored). A lone request
is written at once, so batching adds no wait; under 50 concurrent clients it saves most of RQ's per-job
round trips and a thread hop per request (measured: 0.83 ms of RQ work per job alone, 0.23 ms in batches
of 10). A request larger than one chunk is enqueued on its own: its chunk jobs and the archive job that
depends on them.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from fastapi.concurrency import run_in_threadpool
from redis.client import Pipeline
from rq import Queue, Retry

from deepsynthbody.core import clock, job_events
from deepsynthbody.core.jobs import ARCHIVE_TASK, CHUNK_TASK, GENERATE_TASK, JobSpec, chunk_job_ids
from deepsynthbody.core.settings import Settings

RETRIES = 2  # a job whose worker died is run again, at most this often
Owner = dict[str, str]  # a job's `meta["owner"]`: {"key_id": ..., "name": ...}
OWNER_JOBS = "dsb:jobs:owner:"  # + key id: a sorted set of the key's request job ids by creation time
ALL_JOBS = "dsb:jobs:all"  # every request's job id by creation time (what an admin lists)


def _label(spec: JobSpec) -> str:
    return f"{spec['model_id']}:{spec['model_version']} x{spec['num_samples']} {spec['format']}"


def _job_data(settings: Settings, task: str, args: tuple[object, ...], job_id: str, description: str,
              created_at: str, owner: Owner) -> object:
    return Queue.prepare_data(task, args, job_id=job_id, description=description, timeout=settings.job_timeout,
                              result_ttl=settings.result_ttl, failure_ttl=settings.result_ttl,
                              retry=Retry(max=RETRIES), meta={"created_at": created_at, "owner": owner})


def _index(pipe: Pipeline, settings: Settings, job_id: str, owner: Owner, created_at: str) -> None:
    """The request in its owner's list and in the list of all jobs (GET /jobs), scored by creation time; entries
    older than any job can be kept are dropped as new ones come (a listing also drops those whose job expired)."""
    score = datetime.fromisoformat(created_at).timestamp()
    horizon = score - 2 * (settings.result_ttl + settings.job_timeout)
    for key in (OWNER_JOBS + owner["key_id"], ALL_JOBS):
        pipe.zadd(key, {job_id: score})
        pipe.zremrangebyscore(key, "-inf", horizon)


def enqueue_single_jobs(queue: Queue, settings: Settings, requests: list[tuple[JobSpec, Owner]]) -> None:
    """Requests that fit in one chunk: one job each, all in one transaction."""
    created_at = clock.now(queue.connection)  # the one clock of job times: one round trip per batch
    jobs = [_job_data(settings, GENERATE_TASK, (spec,), spec["job_id"], _label(spec), created_at, owner)
            for spec, owner in requests]
    with queue.connection.pipeline() as pipe:
        queue.enqueue_many(jobs, pipeline=pipe)  # type: ignore[arg-type]
        for spec, owner in requests:
            _index(pipe, settings, spec["job_id"], owner, created_at)
        pipe.execute()
    for spec, owner in requests:
        job_events.queued(spec["job_id"], owner, _label(spec))


def enqueue_chunked(queue: Queue, settings: Settings, spec: JobSpec, owner: Owner) -> None:
    """One job per chunk (in one transaction), then the archive job that RQ starts once they have all finished."""
    label, created_at = _label(spec), clock.now(queue.connection)
    chunks = [_job_data(settings, CHUNK_TASK, (spec, i), chunk_id, f"{label} chunk {i}", created_at, owner)
              for i, chunk_id in enumerate(chunk_job_ids(spec))]
    with queue.connection.pipeline() as pipe:
        jobs = queue.enqueue_many(chunks, pipeline=pipe)  # type: ignore[arg-type]
        _index(pipe, settings, spec["job_id"], owner, created_at)
        pipe.execute()
    queue.enqueue(ARCHIVE_TASK, spec, job_id=spec["job_id"], depends_on=jobs, description=f"{label} archive",
                  job_timeout=settings.job_timeout, result_ttl=settings.result_ttl,
                  failure_ttl=settings.result_ttl, retry=Retry(max=RETRIES),
                  meta={"created_at": created_at, "owner": owner})
    job_events.queued(spec["job_id"], owner, _label(spec))


class Enqueuer:
    """One per API process; used from the event loop only."""

    def __init__(self, queue: Queue, settings: Settings) -> None:
        self.queue, self.settings = queue, settings
        self._waiting: list[tuple[JobSpec, Owner, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def enqueue(self, spec: JobSpec, owner: Owner) -> None:
        """Returns once the job is in Redis; raises what Redis raised (the error handler makes it a 503)."""
        if len(spec["chunks"]) > 1:
            await run_in_threadpool(enqueue_chunked, self.queue, self.settings, spec, owner)
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((spec, owner, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_batches())
        await done

    async def _write_batches(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                await run_in_threadpool(enqueue_single_jobs, self.queue, self.settings,
                                        [(spec, owner) for spec, owner, _ in batch])
            except Exception as exc:  # noqa: BLE001 - every request of the batch gets the error
                for _, _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
            else:
                for _, _, done in batch:
                    if not done.done():
                        done.set_result(None)
