"""Jobs: status, cancel, the archive, and the NDJSON stream."""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from redis import Redis
from rq.command import send_stop_job_command
from rq.job import JobStatus
from rq.serializers import JSONSerializer
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.responses import MalformedRangeHeader, RangeNotSatisfiable
from starlette.types import Receive, Scope, Send

from app import job_progress, job_views, streaming
from app.auth import CallerDep
from app.deps import JobIdDep, RedisDep, SettingsDep, StoreDep
from app.enqueue import ALL_JOBS, OWNER_JOBS
from app.errors import echo, error_response, responses
from app.schemas import DownloadLink, ErrorBody, JobList, JobPublic, JobState
from deepsynthbody.core import job_changes, job_events, keys, quotas
from deepsynthbody.core.errors import Conflict, NotFound
from deepsynthbody.core.jobs import JobPaths
from deepsynthbody.core.keys import Caller
from deepsynthbody.core.settings import Settings

router = APIRouter(prefix="/jobs", tags=["jobs"])


class ArchiveResponse(FileResponse):
    """Reads the archive in 4 MiB pieces instead of Starlette's 64 KiB: one thread hop per piece, so a
    320 MB archive downloads at about 370-650 MB/s instead of 150 on 2 cores (measured)."""

    chunk_size = 4 << 20

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Range requests are Starlette's (206, one or several ranges, `If-Range`); a range it cannot serve is
        answered 416 in the API's error shape, with `Content-Range: bytes */SIZE`, instead of its plain text."""
        headers = Headers(scope=scope)
        wanted, if_range = headers.get("range"), headers.get("if-range")
        if wanted is not None and self.stat_result is not None and (if_range is None or self._should_use_range(if_range)):
            size = self.stat_result.st_size
            try:
                self._parse_range_header(wanted, size)
            except (MalformedRangeHeader, RangeNotSatisfiable) as exc:
                why = exc.content if isinstance(exc, MalformedRangeHeader) else "it starts beyond the end"
                await error_response(
                    416, f"Range {echo(wanted)!r} cannot be served ({why.rstrip('.').lower()}): the archive has {size} "
                    "bytes; ask for e.g. `Range: bytes=0-` or `bytes=START-`", headers={"Content-Range": f"bytes */{size}"},
                    size=size)(scope, receive, send)
                return
        await super().__call__(scope, receive, send)

STOP_WAIT_SECONDS = 5.0
_ACTIVE = (JobState.queued, JobState.started)
MAX_PAGE = 100


def fetch_owned(redis: Redis, job_id: str, caller: Caller) -> job_views.JobView:
    """The job, when it is the caller's (an admin's: any job); another key's job is answered as no job at all, with
    the very same 404."""
    view = job_views.fetch(redis, job_id)
    if not caller.admin and (view.job.meta.get("owner") or {}).get("key_id") != caller.key_id:
        raise job_views.unknown(job_id)
    return view


def _cursor(text: str | None) -> tuple[float, str] | None:
    if text is None:
        return None
    score, _, job_id = text.partition("_")
    try:
        value = float(score)
    except ValueError:
        value = float("nan")
    if value != value or not job_id or len(job_id) > 64:  # noqa: PLR0124 - NaN
        raise RequestValidationError([{"loc": ("query", "cursor"), "type": "value_error", "input": text,
                                       "msg": "not a cursor of this listing: pass `next_cursor` of the previous page"}])
    return value, job_id


@router.get("", response_model=JobList, summary="The caller's jobs (an admin's: every job), newest first",
            description="Pages of `limit` jobs; `next_cursor` gives the next page. Jobs appear until they expire.",
            responses=responses(401, 422, 429, 503))
def list_jobs(caller: CallerDep, redis: RedisDep,
              limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Jobs per page")] = 20,
              cursor: Annotated[str | None, Query(max_length=200, description="`next_cursor` of the previous page")] = None,
              ) -> JobList:
    key = ALL_JOBS if caller.admin else OWNER_JOBS + caller.key_id
    after = _cursor(cursor)
    page: list[JobPublic] = []
    last: tuple[float, str] | None = None
    more = False
    while not more:
        top = "+inf" if after is None else repr(after[0])
        ties = 0 if after is None else redis.zcount(key, top, top)
        rows = redis.zrevrangebyscore(key, top, "-inf", start=0, num=limit - len(page) + 1 + ties, withscores=True)
        rows = [(member.decode(), score) for member, score in rows]
        if after is not None:  # after the cursor: an older job, or one as old that sorts before it
            rows = [(job_id, score) for job_id, score in rows if score < after[0] or job_id < after[1]]
        if not rows:
            break
        for job_id, score in rows:
            after = (score, job_id)
            try:
                view = job_views.fetch(redis, job_id)
            except job_views.NotFound:
                redis.zrem(key, job_id)  # expired after its retention time
                continue
            if len(page) == limit:
                more = True
                break
            page.append(job_views.public(view))
            last = (score, job_id)
    next_cursor = f"{last[0]!r}_{last[1]}" if more and last else None
    return JobList(jobs=page, next_cursor=next_cursor)


@router.get("/{job_id}", response_model=JobPublic, summary="Status, progress and request of a job",
            description="With `wait=SECONDS`, a long poll: the answer comes as soon as the job changes (its status, "
            "its progress), or after SECONDS with the job as it is; at once when the job has ended.",
            responses=responses(401, 404, 422, 429, 503))
async def get_job(job_id: JobIdDep, redis: RedisDep, caller: CallerDep, request: Request,
                  wait: Annotated[float | None, Query(ge=0, le=job_progress.MAX_WAIT_SECONDS, allow_inf_nan=False,
                                                      description="Seconds to wait for a change (long poll)")] = None,
                  ) -> JobPublic:
    async def read() -> JobPublic:
        return job_views.public(await run_in_threadpool(fetch_owned, redis, job_id, caller))

    job = await read()
    if not wait:
        return job
    return await job_progress.wait_for_change(job_progress.changes_of(request), job_id, read, job, wait)


@router.get("/{job_id}/events", summary="The job's progress and state changes as Server-Sent Events, until it ends",
            description="`text/event-stream` for `EventSource` or a streaming `fetch`: `state` (the whole job, "
            "first and on each status change), `progress` (`done` of `total` samples), `end` (the whole job once it "
            "is finished, failed or canceled, with `links.result`; then the stream closes: close the EventSource), "
            "`error` (`message`: the job can no longer be read). Each is one `event:` line and one `data:` JSON line.",
            response_class=StreamingResponse,
            responses={200: {"description": "Server-Sent Events until the job ends",
                             "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                       **responses(401, 404, 429, 503)})
async def job_events_stream(job_id: JobIdDep, redis: RedisDep, caller: CallerDep, request: Request) -> StreamingResponse:
    await run_in_threadpool(fetch_owned, redis, job_id, caller)  # 404 (or 503) before the stream starts

    async def read() -> JobPublic:
        return job_views.public(await run_in_threadpool(fetch_owned, redis, job_id, caller))

    stream = job_progress.events(job_progress.changes_of(request), job_id, read)
    return StreamingResponse(stream, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.delete("/{job_id}", response_model=JobPublic, summary="Cancel a queued or running job, or delete a finished job's files",
               description="A queued or running job: 200 once it is canceled, 202 when a worker is still stopping it. "
               "A finished job: its archive and every other file go (200), and its disk budget comes back; its "
               "status and request stay until it expires. A canceled or failed job has no files: 409.",
               responses={202: {"model": JobPublic, "description": "Canceled; a worker is still stopping"},
                          **responses(401, 404, 409, 429, 503, descriptions={
                              409: "The job was canceled or failed: nothing to cancel or delete"})})
def cancel_job(job_id: JobIdDep, redis: RedisDep, settings: SettingsDep, caller: CallerDep) -> JSONResponse:
    view = fetch_owned(redis, job_id, caller)
    status = view.state
    if status is JobState.finished:
        shutil.rmtree(JobPaths(settings.jobs_dir, job_id).root, ignore_errors=True)  # a download under way ends well
        quotas.release_bytes(redis, job_id)
        job_events.event("deleted", job_id, job_events.owner_name(view.job.meta), f"its files, by {caller.name}")
        job_changes.publish(redis, settings.queue, job_id)
        return JSONResponse(job_views.public(view).model_dump(mode="json"))
    if status not in _ACTIVE:
        raise Conflict(f"job {job_id} is {status.value}; only queued or started jobs can be canceled, and only "
                       "finished jobs have files to delete", hint="nothing was changed", status=status.value)
    for job in [view.job, *view.chunks]:  # the archive job first, so no chunk's end can start it
        job_status = job.get_status(refresh=True)
        if job_status == JobStatus.STARTED:
            send_stop_job_command(redis, job.id, serializer=JSONSerializer)
        elif job_status not in (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED):
            job.cancel()
    deadline = time.monotonic() + STOP_WAIT_SECONDS
    while any(j.get_status(refresh=True) == JobStatus.STARTED for j in view.parts) and time.monotonic() < deadline:
        time.sleep(0.05)
    view.discard_files(settings.jobs_dir)  # else the part still running removes them when it stops
    owner = view.job.meta.get("owner") or {}
    if owner.get("key_id"):
        quotas.release(redis, owner["key_id"], job_id)
    quotas.release_bytes(redis, job_id)
    job_events.event("canceled", job_id, job_events.name_of(owner), f"by {caller.name}")
    job_changes.publish(redis, settings.queue, job_id)
    public = job_views.public(job_views.fetch(redis, job_id))
    return JSONResponse(public.model_dump(mode="json"), status_code=200 if public.status is JobState.canceled else 202)


_RESULT_RESPONSES = {
    200: {"description": "The archive", "content": {"application/zip": {"schema": {"type": "string", "contentMediaType": "application/zip"}}},
          "headers": {"Content-Length": {"description": "Size of the archive in bytes", "schema": {"type": "integer"}},
                      "Content-Disposition": {"description": "attachment; filename=deepsynthbody_...zip",
                                              "schema": {"type": "string"}}}},
    206: {"description": "Part of the archive: the bytes a `Range` header asked for (resume a download with "
                         "`Range: bytes=START-`, and `If-Range: ETAG` so a changed archive comes whole); several "
                         "ranges come as multipart/byteranges",
          "content": {"application/zip": {"schema": {"type": "string", "contentMediaType": "application/zip"}},
                      "multipart/byteranges": {"schema": {"type": "string"}}},
          "headers": {"Content-Length": {"description": "Bytes in this answer (one range: with `Content-Range: "
                                                        "bytes START-END/SIZE`)", "schema": {"type": "integer"}}}},
    416: {"model": ErrorBody, "description": "The `Range` cannot be served (malformed, or beyond the end)",
          "headers": {"Content-Range": {"description": "bytes */SIZE", "schema": {"type": "string"}}}},
    **responses(401, 404, 409, 429, 503, descriptions={
        404: "No such job, or its archive is no longer stored",
        409: "No archive (yet): the job is queued or running, or was canceled or failed (it never will have one)"}),
}


def _archive_conflict(view: job_views.JobView) -> Conflict:
    job_id, status = view.id, view.state
    progress = view.progress
    details = {"status": status.value, "progress": progress.model_dump()}
    if status is JobState.canceled:
        return Conflict(f"job {job_id} was canceled; it has no archive and never will",
                        hint="submit the request again to generate the samples", **details)
    if status is JobState.failed:
        return Conflict(f"job {job_id} failed: {view.error}; it has no archive and never will",
                        hint="see `error`, then submit the request again", error=view.error, **details)
    return Conflict(f"job {job_id} is {status.value} ({progress.done} of {progress.total} samples made); "
                    "its archive exists once it is finished", hint=f"poll GET /jobs/{job_id} until its status is finished",
                    **details)


@router.head("/{job_id}/result", summary="Size and name of a finished job's archive: GET without the body",
             response_class=FileResponse, responses=_RESULT_RESPONSES)
@router.get("/{job_id}/result", summary="The zip archive of a finished job", response_class=FileResponse,
            responses=_RESULT_RESPONSES)
def get_result(job_id: JobIdDep, redis: RedisDep, settings: SettingsDep, caller: CallerDep,
               link: Annotated[str | None, Query(
                   description="A download link's signature (POST /jobs/{id}/result/link makes the whole URL): "
                   "opens the archive without the Authorization header until it expires")] = None) -> FileResponse:
    # `link` is checked with the key, by app.auth, before the route runs; it is declared for the document
    view = fetch_owned(redis, job_id, caller)
    archive = _stored_archive(view, settings)
    spec = view.spec
    filename = f"deepsynthbody_{spec['model_id']}-v{spec['model_version']}_n{spec['num_samples']}_seed{spec['seed']}_{spec['format']}_{job_id[:8]}.zip"
    return ArchiveResponse(archive, media_type="application/zip", filename=filename, stat_result=archive.stat())


def _stored_archive(view: job_views.JobView, settings: Settings) -> Path:
    """The finished job's archive; 409 while it has none, 404 once it is no longer stored."""
    if view.state is not JobState.finished:
        raise _archive_conflict(view)
    archive = JobPaths(settings.jobs_dir, view.id).archive
    if not archive.exists():
        raise NotFound(f"the archive of job {view.id} is no longer stored",
                       hint="submit the request again (same seed, same samples)")
    return archive


@router.post("/{job_id}/result/link", response_model=DownloadLink,
             summary="A link to the finished job's archive that opens it without the Authorization header, for a while",
             description="For downloads that cannot send a header: a browser's own download manager (the web app's "
             "button), a wget on another host. The link is the caller's key's, for this job's archive only, until "
             "`expires_at` (DSB_DOWNLOAD_LINK_SECONDS); revoking the key ends it. Nothing is stored for it.",
             responses=responses(401, 404, 409, 429, 503, descriptions={
                 404: "No such job, or its archive is no longer stored",
                 409: "No archive (yet): the job is queued or running, or was canceled or failed"}))
def result_link(job_id: JobIdDep, redis: RedisDep, settings: SettingsDep, caller: CallerDep) -> DownloadLink:
    view = fetch_owned(redis, job_id, caller)
    _stored_archive(view, settings)
    path = job_views.links(job_id).result
    if caller.key_id == keys.ANONYMOUS:  # the service runs without keys: the path itself opens the archive
        return DownloadLink(url=path, expires_at=None)
    key_digest = keys.key_digest_of(redis, caller.key_id)
    if key_digest is None:
        raise keys.RevokedKey("the API key was revoked while this request was under way; no link was made")
    expires = int(time.time()) + settings.download_link_seconds
    link = keys.download_link(caller.key_id, key_digest, job_id, expires)
    return DownloadLink(url=f"{path}?{keys.LINK_PARAMETER}={link}", expires_at=datetime.fromtimestamp(expires, UTC))


@router.get("/{job_id}/stream", summary="The job's samples as NDJSON, sent as each batch completes",
            response_class=StreamingResponse,
            responses={200: {"description": "One JSON object per line: a sample, or a last line with `error`",
                             "content": {"application/x-ndjson": {"schema": {"type": "string"}}}},
                       **responses(401, 404, 409, 429, 503, descriptions={409: "The job was canceled or failed"})})
def stream(job_id: JobIdDep, redis: RedisDep, store: StoreDep, settings: SettingsDep, caller: CallerDep) -> StreamingResponse:
    view = fetch_owned(redis, job_id, caller)
    status = view.state
    if status in (JobState.failed, JobState.canceled):
        raise Conflict(f"job {job_id} {'was canceled' if status is JobState.canceled else 'failed'}; nothing to stream",
                       hint="submit the request again", status=status.value, error=view.error)
    paths = JobPaths(settings.jobs_dir, job_id)
    return StreamingResponse(streaming.ndjson(redis, store, paths, job_id), media_type="application/x-ndjson")
