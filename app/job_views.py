"""Read RQ jobs and present them as the API's job resource (a chunked request reads as one job)."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from redis import Redis
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from app.schemas import JobLinks, JobPublic, JobState, ModelRef, Progress
from deepsynthbody.core.errors import NotFound
from deepsynthbody.core.jobs import JobPaths, JobSpec, candidate_chunks, chunk_job_ids

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


def _state(job: Job) -> JobState:
    return _STATES.get(job.get_status(refresh=False), JobState.queued)


def _error(job: Job) -> str | None:
    result = job.latest_result()
    text = (result.exc_string if result else None) or job.exc_info or ""
    if "AbandonedJobError" in text:  # RQ's words for a job whose worker died every time it ran it
        return ("the worker running it was killed (or its machine stopped) each time it was tried; "
                "submit the request again")
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return without_paths(lines[-1]) if lines else "the worker failed without a message"


# An absolute path: a "/" that starts a word (not the "//" of a URL, nor a "/" inside a relative path or a word)
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])/[^\s'\"`,;()\[\]{}<>]*")


def without_paths(text: str) -> str:
    """`text` with every absolute path cut to its last part (`/srv/dsb/models/x/1/model.onnx` -> `model.onnx`):
    an error shown to clients names the file, not how the server's disk is laid out."""
    return _ABSOLUTE_PATH.sub(lambda m: m.group(0).rstrip("/").rsplit("/", 1)[-1] or "/", text)


@dataclass
class JobView:
    """A request's job and, when it was split, its chunk jobs: one status, one progress."""

    job: Job
    chunks: list[Job]

    @property
    def id(self) -> str:
        return self.job.id

    @property
    def spec(self) -> JobSpec:
        return self.job.args[0]

    @property
    def parts(self) -> list[Job]:
        return self.chunks or [self.job]

    @property
    def state(self) -> JobState:
        own = _state(self.job)
        if not self.chunks or own is not JobState.queued:
            return own
        states = [_state(chunk) for chunk in self.chunks]
        for decisive in (JobState.failed, JobState.canceled):
            if decisive in states:
                return decisive
        return JobState.queued if all(s is JobState.queued for s in states) else JobState.started

    def chunk_progress(self) -> list[tuple[int, int, int]]:
        """(first sample, done, count) of each chunk. A request cut in candidate space has its samples written by
        its archive job alone: one row, that job's."""
        if candidate_chunks(self.spec):
            saved, total = self.job.meta.get("progress"), self.spec["num_samples"]
            done = total if _state(self.job) is JobState.finished else saved["done"] if saved else 0
            return [(0, done, total)]
        rows = []
        for (first, count), part in zip(self.spec["chunks"], self.parts):
            saved = part.meta.get("progress")
            done = saved["done"] if saved else (count if _state(part) is JobState.finished else 0)
            rows.append((first, done, count))
        return rows

    @property
    def progress(self) -> Progress:
        if self.state is JobState.finished:
            return Progress(done=self.spec["num_samples"], total=self.spec["num_samples"])
        if candidate_chunks(self.spec):  # the samples found so far by the chunks searching the candidates
            found = sum((part.meta.get("progress") or {}).get("done", 0) for part in self.chunks)
            return Progress(done=min(found, self.spec["num_samples"]), total=self.spec["num_samples"])
        return Progress(done=sum(done for _, done, _ in self.chunk_progress()), total=self.spec["num_samples"])

    def ready_prefix(self) -> int:
        """How many samples from the first one on are written (chunks finish in any order)."""
        ready = 0
        for first, done, count in self.chunk_progress():
            ready = first + done
            if done < count:
                break
        return ready

    @property
    def error(self) -> str | None:
        if self.state is not JobState.failed:
            return None
        failed = [part for part in [self.job, *self.chunks] if _state(part) is JobState.failed]
        return _error(failed[0])

    @property
    def created_at(self) -> datetime | None:
        """When the API accepted the request, on Redis's clock (`deepsynthbody.core.clock`), recorded in its jobs'
        meta; for jobs enqueued without it, its first RQ job's creation (a chunked request's chunk jobs are
        created before its archive job)."""
        parts = [self.job, *self.chunks]
        recorded = [datetime.fromisoformat(p.meta["created_at"]) for p in parts if p.meta.get("created_at")]
        created = recorded or [p.created_at for p in parts if p.created_at]
        return min(created) if created else None

    @property
    def started_at(self) -> datetime | None:
        """When a worker first began a part of it: each part records this once (`workers.tasks`), so it does not
        move between polls, and the archive's manifest.json says the same."""
        started = [datetime.fromisoformat(p.meta["started_at"]) for p in self.parts if p.meta.get("started_at")]
        return min(started) if started else None

    @property
    def ended_at(self) -> datetime | None:
        """A finished job's is its manifest's `finished_at`; a failed or canceled one's, when RQ ended it."""
        state = self.state
        if state is JobState.finished and self.job.meta.get("finished_at"):
            return datetime.fromisoformat(self.job.meta["finished_at"])
        return self.job.ended_at if state in (JobState.finished, JobState.failed, JobState.canceled) else None

    def running(self) -> bool:
        """Whether a worker is running a part of it (and may still write its files)."""
        return any(part.get_status(refresh=True) == JobStatus.STARTED for part in [self.job, *self.chunks])

    def discard_files(self, jobs_dir: Path) -> bool:
        """A canceled job's files (samples, parts, partial archive) go at once, unless a part still runs: the
        worker running it removes them when it stops (`workers.worker.remove_canceled_files`)."""
        if self.running():
            return False
        shutil.rmtree(JobPaths(jobs_dir, self.id).root, ignore_errors=True)
        return True

    @property
    def provider(self) -> str | None:
        providers = sorted({p.meta["provider"] for p in self.parts if p.meta.get("provider")})
        return ", ".join(providers) or None


def unknown(job_id: str) -> NotFound:
    """The one answer for a job that does not exist, or is another key's (a job id must not be confirmable)."""
    return NotFound(f"no job {job_id!r} (unknown, or expired after its retention time)")


def fetch(redis: Redis, job_id: str) -> JobView:
    try:
        job = Job.fetch(job_id, connection=redis, serializer=JSONSerializer)
    except NoSuchJobError:
        raise unknown(job_id) from None
    ids = chunk_job_ids(job.args[0])
    chunks = [c for c in Job.fetch_many(ids, connection=redis, serializer=JSONSerializer) if c is not None] if ids else []
    return JobView(job, chunks)


def links(job_id: str) -> JobLinks:
    base = f"/jobs/{job_id}"
    return JobLinks(self=base, result=f"{base}/result", stream=f"{base}/stream", events=f"{base}/events")


def public(view: JobView) -> JobPublic:
    spec = view.spec
    return JobPublic(
        job_id=view.id,
        status=view.state,
        progress=view.progress,
        seed=spec["seed"],
        model=ModelRef(id=spec["model_id"], version=spec["model_version"]),
        format=spec["format"],
        request=spec["request"],
        created_at=view.created_at,
        started_at=view.started_at,
        ended_at=view.ended_at,
        execution_provider=view.provider,
        error=view.error,
        links=links(view.id),
    )
