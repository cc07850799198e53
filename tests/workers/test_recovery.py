"""Jobs left started by workers that are gone (killed, their machine stopped) run again at once."""

from __future__ import annotations

import uuid
from pathlib import Path

from redis import Redis
from rq import Queue, Retry, Worker
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from app import job_views
from deepsynthbody.core.embedded_redis import EmbeddedRedis
from workers.recovery import forget_workers, requeue_orphans


def _spec() -> dict:
    return {"job_id": uuid.uuid4().hex, "chunks": [[0, 1]]}


def _started_by(job: Job, queue: Queue, worker_name: str) -> None:
    """What a worker does when it takes a job: off the queue, an execution in the started registry."""
    with queue.connection.pipeline() as pipe:
        pipe.lrem(queue.key, 0, job.id)
        Execution.create(job, ttl=600, pipeline=pipe, worker_name=worker_name)
        job.set_status(JobStatus.STARTED, pipeline=pipe)
        pipe.execute()


def test_only_the_jobs_of_workers_no_longer_registered_run_again(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path) as server:  # its own: forget_workers forgets every worker of a Redis
        _check(Redis.from_url(server.url))


def _check(redis: Redis) -> None:
    queue = Queue(f"recovery-{uuid.uuid4().hex[:8]}", connection=redis, serializer=JSONSerializer)
    orphan = queue.enqueue("workers.tasks.generate", _spec(), retry=Retry(max=2))
    last_try = queue.enqueue("workers.tasks.generate", _spec())
    kept = queue.enqueue("workers.tasks.generate", _spec(), retry=Retry(max=2))
    alive = Worker([queue], connection=redis, name=f"alive-{uuid.uuid4().hex[:8]}")
    alive.register_birth()
    try:
        _started_by(orphan, queue, "gone")
        _started_by(last_try, queue, "gone")
        _started_by(kept, queue, alive.name)

        assert sorted(requeue_orphans(redis, [queue.name])) == sorted([orphan.id, last_try.id])

        assert orphan.get_status(refresh=True) == JobStatus.QUEUED and queue.job_ids == [orphan.id]
        assert last_try.get_status(refresh=True) == JobStatus.FAILED  # no retries left: failed, with a message
        assert "was killed" in (job_views.fetch(redis, last_try.id).error or "")  # what the status says
        assert kept.get_status(refresh=True) == JobStatus.STARTED  # its worker is alive: untouched
        assert requeue_orphans(redis, [queue.name]) == []

        # `serve` starting on its private Redis: every registered worker is gone
        assert forget_workers(redis) >= 1
        assert requeue_orphans(redis, [queue.name]) == [kept.id]
        assert queue.job_ids == [orphan.id, kept.id]
    finally:
        alive.register_death()
