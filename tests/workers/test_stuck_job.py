"""A job taken off the queue but never started (its worker died, or Redis refused its next write, in between) runs
again within about half a minute, not RQ's minute plus its maintenance interval."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
from redis import Redis
from rq import Queue
from rq.intermediate_queue import IntermediateQueue

from deepsynthbody.core.settings import Settings
from tests.conftest import ECG, run_api, start_worker, wait_finished


def test_a_job_stranded_between_taken_and_started_runs_again(settings: Settings, ecg_model_dir: Path) -> None:
    own = settings.model_copy(update={"queue": f"stuck-{uuid.uuid4().hex[:8]}"})
    redis = Redis.from_url(str(own.redis_url))
    queue = Queue(own.queue, connection=redis)
    api, url = run_api(own)
    worker = None
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            job_id = client.post(ECG, json={"num_samples": 2, "seed": 5, "format": "npy"}).json()["job_id"]
            # what a worker's take does (BLMOVE into RQ's intermediate queue), and then nothing: it died
            moved = redis.lmove(queue.key, IntermediateQueue.get_intermediate_queue_key(queue.key))
            assert moved.decode() == job_id
            started = time.monotonic()
            worker = start_worker(own, batch_size=2)
            job = wait_finished(client, job_id, timeout=55)
            assert job["status"] == "finished", job
            assert time.monotonic() - started < 55
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=30)
        api.terminate()
        api.wait(timeout=30)
