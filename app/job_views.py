"""Read RQ jobs and present them as the API's job resource."""

from __future__ import annotations

from redis import Redis
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from app.schemas import JobLinks, JobPublic, JobState, ModelRef, Progress
from deepsynthbody.errors import NotFound
from deepsynthbody.jobs import JobSpec

_STATES = {
    JobStatus.CREATED: JobState.queued,
    JobStatus.QUEUED: JobState.queued,
    JobStatus.DEFERRED: JobState.queued,
    JobStatus.SCHEDULED: JobState.queued,
    JobStatus.READY_TO_ENQUEUE: JobState.queued,
    JobStatus.RATE_LIMITED: JobState.queued,
    JobStatus.STARTED: JobState.started,
    JobStatus.FINISHED: JobState.finished,
    JobStatus.FAILED: JobState.failed,
    JobStatus.STOPPED: JobState.canceled,
    JobStatus.CANCELED: JobState.canceled,
}


def fetch(redis: Redis, job_id: str) -> Job:
    try:
        return Job.fetch(job_id, connection=redis, serializer=JSONSerializer)
    except NoSuchJobError:
        raise NotFound(f"no job {job_id!r} (unknown, or expired after its retention time)") from None


def state(job: Job) -> JobState:
    return _STATES.get(job.get_status(refresh=False), JobState.queued)


def spec(job: Job) -> JobSpec:
    return job.args[0]


def links(job_id: str) -> JobLinks:
    base = f"/jobs/{job_id}"
    return JobLinks(self=base, result=f"{base}/result", stream=f"{base}/stream")


def progress(job: Job) -> Progress:
    saved = job.meta.get("progress")
    if saved:
        return Progress(**saved)
    total = spec(job)["num_samples"]
    return Progress(done=total if state(job) is JobState.finished else 0, total=total)


def error(job: Job) -> str | None:
    if state(job) is not JobState.failed:
        return None
    result = job.latest_result()
    text = (result.exc_string if result else None) or job.exc_info or ""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "the worker failed without a message"


def public(job: Job) -> JobPublic:
    job_spec = spec(job)
    return JobPublic(
        job_id=job.id,
        status=state(job),
        progress=progress(job),
        seed=job_spec["seed"],
        model=ModelRef(id=job_spec["model_id"], version=job_spec["model_version"]),
        format=job_spec["format"],
        request=job_spec["request"],
        created_at=job.created_at,
        started_at=job.started_at,
        ended_at=job.ended_at,
        execution_provider=job.meta.get("provider"),
        error=error(job),
        links=links(job.id),
    )
