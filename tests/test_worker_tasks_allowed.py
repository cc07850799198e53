"""Whoever can write to Redis cannot run code in the workers: a job naming anything but the service's own task
functions fails without running (nor importing) what it names, and the worker goes on."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import httpx
from redis import Redis
from rq import Callback, Queue
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from deepsynthbody.core.settings import Settings
from tests.conftest import submit, wait_finished, wait_for


def _ended(job: Job) -> JobStatus:
    wait_for(lambda: job.get_status(refresh=True) in (JobStatus.FINISHED, JobStatus.FAILED), 30, f"job {job.id} to end")
    return job.get_status(refresh=True)


def _error(job: Job) -> str:
    result = job.latest_result()
    return (result.exc_string if result else None) or ""


def test_a_job_naming_another_function_fails_unrun(settings: Settings, client: httpx.Client, tmp_path: Path,
                                                   worker: subprocess.Popen[bytes]) -> None:
    redis = Redis.from_url(str(settings.redis_url))
    queue = Queue(settings.queue, connection=redis, serializer=JSONSerializer)
    pickled = Queue(settings.queue, connection=redis)  # RQ's default serializer: pickle
    markers = {name: tmp_path / f"{name}-{uuid.uuid4().hex}" for name in ("system", "pickled", "callback")}
    jobs = {
        "system": queue.enqueue("os.system", f"touch {markers['system']}"),
        "pickled": pickled.enqueue(subprocess.call, ["touch", str(markers["pickled"])]),
        # a service task, with a callback that would run a command
        "callback": queue.enqueue("workers.tasks.generate", {"job_id": uuid.uuid4().hex},
                                  on_failure=Callback("os.system")),
    }
    for name, job in jobs.items():
        assert _ended(job) == JobStatus.FAILED, name
        assert "refused" in _error(job), (name, _error(job))
    assert "'os.system' is not a task of this service" in _error(jobs["system"])
    assert "a failure callback" in _error(jobs["callback"])
    assert not any(marker.exists() for marker in markers.values())
    assert worker.poll() is None  # the worker lives on and serves the next request
    job = submit(client, {"num_samples": 2, "seed": 1, "format": "npy"})
    assert wait_finished(client, job["job_id"])["status"] == "finished"
