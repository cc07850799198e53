"""RQ workers that keep their ONNX sessions: jobs run in the worker process itself, not in a fork."""

from __future__ import annotations

import logging
import signal

from redis import Redis
from rq import Queue, SimpleWorker
from rq.executions import Execution
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.worker import BaseWorker
from rq.worker_pool import WorkerPool

from deepsynthbody.settings import get_settings
from workers import lifecycle, retention


class GenerationWorker(SimpleWorker):
    """SimpleWorker, so per-process model sessions outlive each job; stops and heartbeats between batches."""

    def perform_job(self, job: Job, queue: Queue, execution: Execution) -> bool:
        lifecycle.attach(lambda: self.maintain_heartbeats(job, execution))
        try:
            return super().perform_job(job, queue, execution)
        finally:
            lifecycle.detach()

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        # SimpleWorker's TTL is the whole job timeout; the job heartbeats, so use the forking worker's short one.
        return BaseWorker.get_heartbeat_ttl(self, job, working_time)

    def run_maintenance_tasks(self) -> None:
        super().run_maintenance_tasks()
        settings = get_settings()
        # RQ forgets a finished job after result_ttl; its files go too (an hour later, so no download is cut short)
        retention.remove_expired(settings.jobs_dir, settings.result_ttl + 3600)

    def kill_horse(self, sig: signal.Signals = signal.SIGKILL) -> None:
        # There is no horse to kill: the job checks this flag between batches and stops itself.
        lifecycle.stop_requested.set()


def connect() -> Redis:
    settings = get_settings()
    if not settings.redis_url:
        raise SystemExit("set DSB_REDIS_URL (or REDIS_URL) to the Redis the API uses")
    return Redis.from_url(settings.redis_url)


def run(queues: list[str], num_workers: int = 1, burst: bool = False) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    connection = connect()
    if num_workers == 1:
        worker = GenerationWorker(queues, connection=connection, serializer=JSONSerializer)
        worker.work(burst=burst, with_scheduler=True)
        return
    pool = WorkerPool(queues, connection=connection, num_workers=num_workers, worker_class=GenerationWorker, serializer=JSONSerializer)
    pool.start(burst=burst)
