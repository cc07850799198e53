"""RQ workers that keep their ONNX sessions: jobs run in the worker process itself, not in a fork."""

from __future__ import annotations

import logging
import signal

from redis import Redis
from rq import Queue, SimpleWorker
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.worker_pool import WorkerPool

from deepsynthbody.settings import get_settings
from workers.cancellation import stop_requested


class GenerationWorker(SimpleWorker):
    """SimpleWorker, so the per-process model sessions outlive each job; stops jobs cooperatively."""

    def execute_job(self, job: Job, queue: Queue) -> None:
        stop_requested.clear()
        super().execute_job(job, queue)

    def kill_horse(self, sig: signal.Signals = signal.SIGKILL) -> None:
        # There is no horse to kill: the job checks this flag between batches and stops itself.
        stop_requested.set()


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
