"""A request's job changed: one Redis pub/sub message, so API processes wake the clients that wait on it.

Whoever writes a job's progress or state (the workers as they save progress and end a part, the API as it cancels
or deletes) publishes the request's job id on `channel(queue)`. Each API process holds one subscription
(`app.job_progress`) and wakes the `GET /jobs/{id}/events` and `GET /jobs/{id}?wait=` requests waiting on that id:
no client polls Redis. A message is a hint, never the state: the waiter reads the job again, so a lost message
costs at most the waiter's periodic re-read. Imports no FastAPI and no onnxruntime: both sides use it.
"""

from __future__ import annotations

import logging

from redis import Redis
from redis.exceptions import RedisError
from rq.exceptions import DeserializationError
from rq.job import Job

log = logging.getLogger(__name__)


def channel(queue: str) -> str:
    return f"dsb:job-changes:{queue}"


def request_id(job: Job) -> str:
    """The request's job id of an RQ job: its own, or a chunk's request's (`spec["job_id"]`)."""
    try:
        args = job.args
    except DeserializationError:  # a job whose data is not ours (refused unrun): its own id
        return job.id
    spec = args[0] if args and isinstance(args[0], dict) else {}
    return str(spec.get("job_id") or job.id)


def publish(connection: Redis, queue: str, job_id: str) -> None:
    try:
        connection.publish(channel(queue), job_id)
    except RedisError as exc:  # waiters re-read on their own within seconds
        log.debug("job %s: could not announce its change: %s", job_id, exc)


def job_changed(job: Job) -> None:
    """After an RQ job's meta or status was written."""
    publish(job.connection, job.origin, request_id(job))
