"""Jobs: status, cancel, the archive, and the NDJSON stream."""

from __future__ import annotations

import time

from fastapi import APIRouter
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from rq.command import send_stop_job_command
from rq.job import JobStatus
from rq.serializers import JSONSerializer

from app import job_views, streaming
from app.deps import RedisDep, SettingsDep, StoreDep
from app.schemas import JobPublic, JobState
from deepsynthbody.errors import Conflict, NotFound
from deepsynthbody.jobs import JobPaths

router = APIRouter(prefix="/jobs", tags=["jobs"])


class ArchiveResponse(FileResponse):
    """Reads the archive in 4 MiB pieces instead of Starlette's 64 KiB: one thread hop per piece, so a
    320 MB archive downloads at about 370-650 MB/s instead of 150 on 2 cores (measured)."""

    chunk_size = 4 << 20

STOP_WAIT_SECONDS = 5.0
_ACTIVE = (JobState.queued, JobState.started)


@router.get("/{job_id}", response_model=JobPublic, summary="Status, progress and request of a job")
def get_job(job_id: str, redis: RedisDep) -> JobPublic:
    return job_views.public(job_views.fetch(redis, job_id))


@router.delete("/{job_id}", response_model=JobPublic, summary="Cancel a queued or running job",
               responses={409: {"description": "The job already ended"}})
def cancel_job(job_id: str, redis: RedisDep) -> JSONResponse:
    view = job_views.fetch(redis, job_id)
    status = view.state
    if status not in _ACTIVE:
        raise Conflict(f"job {job_id} is {status.value}; only queued or started jobs can be canceled", status=status.value)
    for job in [view.job, *view.chunks]:  # the archive job first, so no chunk's end can start it
        job_status = job.get_status(refresh=True)
        if job_status == JobStatus.STARTED:
            send_stop_job_command(redis, job.id, serializer=JSONSerializer)
        elif job_status not in (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED):
            job.cancel()
    deadline = time.monotonic() + STOP_WAIT_SECONDS
    while any(j.get_status(refresh=True) == JobStatus.STARTED for j in view.parts) and time.monotonic() < deadline:
        time.sleep(0.05)
    public = job_views.public(job_views.fetch(redis, job_id))
    return JSONResponse(public.model_dump(mode="json"), status_code=200 if public.status is JobState.canceled else 202)


@router.get("/{job_id}/result", summary="The zip archive of a finished job",
            response_class=FileResponse,
            responses={200: {"content": {"application/zip": {}}}, 409: {"description": "The job has not finished"}})
def get_result(job_id: str, redis: RedisDep, settings: SettingsDep) -> FileResponse:
    view = job_views.fetch(redis, job_id)
    status = view.state
    if status is not JobState.finished:
        raise Conflict(f"job {job_id} is {status.value}; the archive exists once it is finished",
                       status=status.value, progress=view.progress.model_dump())
    archive = JobPaths(settings.jobs_dir, job_id).archive
    if not archive.exists():
        raise NotFound(f"the archive of job {job_id} is no longer stored")
    spec = view.spec
    filename = f"deepsynthbody_{spec['model_id']}-v{spec['model_version']}_n{spec['num_samples']}_seed{spec['seed']}_{spec['format']}_{job_id[:8]}.zip"
    return ArchiveResponse(archive, media_type="application/zip", filename=filename)


@router.get("/{job_id}/stream", summary="The job's samples as NDJSON, sent as each batch completes",
            response_class=StreamingResponse,
            responses={200: {"content": {"application/x-ndjson": {}}}, 409: {"description": "The job was canceled or failed"}})
def stream(job_id: str, redis: RedisDep, store: StoreDep, settings: SettingsDep) -> StreamingResponse:
    view = job_views.fetch(redis, job_id)
    status = view.state
    if status in (JobState.failed, JobState.canceled):
        raise Conflict(f"job {job_id} is {status.value}; nothing to stream", status=status.value, error=view.error)
    paths = JobPaths(settings.jobs_dir, job_id)
    return StreamingResponse(streaming.ndjson(redis, store, paths, job_id), media_type="application/x-ndjson")
