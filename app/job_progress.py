"""Following a job without polling Redis: `GET /jobs/{id}/events` (Server-Sent Events) and `GET /jobs/{id}?wait=`.

Each API process holds one Redis subscription (`JobChanges`) to the channel the workers and the API publish a
request's job id on whenever they write its progress or state (`deepsynthbody.core.job_changes`). A waiting request
registers an `asyncio.Event` under its job id; a message sets the events of that id, and only then does a waiting
request read the job again (one read per change, not per interval). A message can be lost (the subscription was
reconnecting): every waiter also reads again after `REREAD_SECONDS` without one, and an event stream sends an SSE
comment then, which keeps proxies from closing an idle connection.

The stream (`text/event-stream`, one `event:` and one `data:` JSON line per message):
- `state`: the whole job (as `GET /jobs/{id}`), first and whenever its status changes;
- `progress`: `{"job_id", "status", "progress": {"done", "total"}}` whenever samples are made;
- `end`: the whole job once it is finished, failed or canceled (its `links.result` is the archive), then the
  server closes the stream. An `EventSource` reconnects to a closed stream: close it on `end`;
- `error`: `{"message"}` when the job can no longer be read (it expired, or Redis is unreachable); the stream ends.

Keys: the stream is a /jobs route like the others (`Authorization: Bearer KEY`; another key's job is the 404 of an
unknown one). A browser's `EventSource` cannot send that header, so it follows a job directly while keys are off;
with keys on, a page reads the same stream with `fetch` and the header (the web app does). Keys are never taken
from the query string: access logs, proxies and browser histories keep URLs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from redis.asyncio import Redis as AsyncRedis
from starlette.requests import Request

from app.schemas import JobPublic, JobState
from deepsynthbody.core.errors import ServiceError
from deepsynthbody.core.job_changes import channel

log = logging.getLogger(__name__)

REREAD_SECONDS = 15.0  # without a message: read the job anyway, and keep the stream's connection busy
RECONNECT_SECONDS = 1.0
SUBSCRIBE_WAIT_SECONDS = 2.0  # a waiter waits this long at most for the subscription before reading the job
MAX_WAIT_SECONDS = 60  # the longest `?wait=` of a long poll
RETRY_MILLISECONDS = 2000  # how soon an EventSource reconnects after a dropped connection
TERMINAL = (JobState.finished, JobState.failed, JobState.canceled)


class JobChanges:
    """One subscription per API process; any number of waiters, by job id."""

    def __init__(self, redis_url: str, queue: str) -> None:
        self.redis_url, self.channel = redis_url, channel(queue)
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._task: asyncio.Task[None] | None = None
        self._subscribed: asyncio.Event | None = None

    @contextlib.asynccontextmanager
    async def watch(self, job_id: str) -> AsyncIterator[asyncio.Event]:
        """An event set whenever `job_id` changes (clear it, then read the job: no change is missed)."""
        woken = asyncio.Event()
        self._waiters.setdefault(job_id, set()).add(woken)
        subscribed = self._start()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(subscribed.wait(), SUBSCRIBE_WAIT_SECONDS)
        try:
            yield woken
        finally:
            waiting = self._waiters.get(job_id)
            if waiting is not None:
                waiting.discard(woken)
                if not waiting:
                    del self._waiters[job_id]

    def waiting(self) -> int:
        return sum(map(len, self._waiters.values()))

    def _start(self) -> asyncio.Event:
        if self._subscribed is None:
            self._subscribed = asyncio.Event()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._listen(self._subscribed))
        return self._subscribed

    def _wake(self, job_id: str | None = None) -> None:
        groups = self._waiters.values() if job_id is None else [self._waiters.get(job_id, ())]
        for group in groups:
            for woken in group:
                woken.set()

    async def _listen(self, subscribed: asyncio.Event) -> None:
        while True:
            redis = AsyncRedis.from_url(self.redis_url, socket_connect_timeout=2, health_check_interval=30)
            try:
                async with redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self.channel)
                    subscribed.set()
                    self._wake()  # whatever changed while it was not subscribed
                    while True:
                        message = await pubsub.get_message(timeout=30.0)
                        if message is not None and message["type"] == "message":
                            data = message["data"]
                            self._wake(data.decode() if isinstance(data, bytes) else str(data))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis gone or restarting: subscribe again
                subscribed.clear()
                log.warning("job changes: subscription to %s lost (%s); subscribing again", self.channel, exc)
                self._wake()
                await asyncio.sleep(RECONNECT_SECONDS)
            finally:
                with contextlib.suppress(Exception):
                    await redis.aclose()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


def changes_of(request: Request) -> JobChanges:
    """The process's `JobChanges`, made on first use (in the server's event loop)."""
    state = request.app.state
    changes = getattr(state, "job_changes", None)
    if changes is None:
        settings = state.settings
        changes = state.job_changes = JobChanges(str(settings.redis_url), settings.queue)
    return changes


Read = Callable[[], Awaitable[JobPublic]]


async def wait_for_change(changes: JobChanges, job_id: str, read: Read, seen: JobPublic, seconds: float) -> JobPublic:
    """The job as soon as it differs from `seen`, or as it is after `seconds`; at once when it has ended."""
    if seen.status in TERMINAL or seconds <= 0:
        return seen
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    async with changes.watch(job_id) as woken:
        while True:
            woken.clear()
            current = await read()
            remaining = deadline - loop.time()
            if current != seen or remaining <= 0:
                return current
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), min(remaining, REREAD_SECONDS))


def _message(event: str, data: object) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _progress(job: JobPublic) -> dict[str, object]:
    return {"job_id": job.job_id, "status": job.status.value, "progress": job.progress.model_dump()}


async def events(changes: JobChanges, job_id: str, read: Read) -> AsyncIterator[bytes]:
    """The job's Server-Sent Events, until it ends (see the module's docstring)."""
    yield f"retry: {RETRY_MILLISECONDS}\n\n".encode()
    last: JobPublic | None = None
    async with changes.watch(job_id) as woken:
        while True:
            woken.clear()
            try:
                job = await read()
            except ServiceError as exc:  # expired, or deleted with its request
                yield _message("error", {"message": exc.message})
                return
            except Exception as exc:  # noqa: BLE001 - Redis unreachable: the client may reconnect later
                log.warning("job %s: event stream ended: %s", job_id, exc)
                yield _message("error", {"message": "the job queue (Redis) is unreachable; reconnect later"})
                return
            if job.status in TERMINAL:
                if last is not None and last.progress != job.progress:
                    yield _message("progress", _progress(job))
                yield _message("end", job.model_dump(mode="json"))
                return
            if last is None or job.status != last.status:
                yield _message("state", job.model_dump(mode="json"))
            elif job.progress != last.progress:
                yield _message("progress", _progress(job))
            last = job
            try:
                await asyncio.wait_for(woken.wait(), REREAD_SECONDS)
            except TimeoutError:
                yield b": still running\n\n"
