"""`serve`'s watch over its worker processes and its private Redis: one that dies is started again, and a dead
worker's job runs again at once (`workers.recovery`). An entry point's piece: it imports the workers' recovery."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence

from deepsynthbody.core import gpus as gpu_lists
from deepsynthbody.core.processes import how_it_ended, spawn, stop_all


class _Slot:
    def __init__(self, gpu: str | None = None) -> None:
        self.gpu = gpu  # the GPU its worker runs on, whichever worker that is (`serve --gpus`)
        self.process: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.backoff = 0.0
        self.next_start = 0.0


class Supervisor:
    """`serve`'s worker processes and private Redis, watched: one that dies is reaped (no zombie), said in the log,
    and started again. A dead worker is deregistered at once and the job it was running queued again
    (`workers.recovery.worker_gone`), so the worker started in its place runs it within a second or two. Redis
    comes back on the same port, with the same password and files: every process `serve` started finds it again.

    A process that dies within 10 s of its start is started again after a pause that doubles each time (up to
    10 s), so a worker that cannot start does not spin."""

    POLL_SECONDS = 0.2
    HEALTHY_SECONDS = 10.0

    def __init__(self, worker_command: Sequence[str], num_workers: int, redis_url: str, queue: str,
                 redis_server: object | None = None, gpus: list[str] | None = None) -> None:
        import threading

        self.worker_command = list(worker_command)
        self.redis_url, self.queue, self.redis_server = redis_url, queue, redis_server
        self.slots = [_Slot(gpu_lists.dealt(i, gpus) if gpus else None) for i in range(num_workers)]
        self._redis = _Slot()  # its restart times: a Redis that cannot start is tried again after a pause
        self._redis.started = time.monotonic()
        self._dead: list[int] = []  # pids of workers whose registration and job are still to be seen to
        self._stopping = threading.Event()  # no more restarts
        self._exit = threading.Event()
        self._lock = threading.Lock()  # a round of `check` and the start of `stop` do not overlap
        # Children are started by the watching thread, which lives until they are stopped: their parent-death
        # signal (`_die_with_parent`) is tied to the thread that started them.
        self._thread = threading.Thread(target=self._watch, name="supervisor", daemon=True)

    @property
    def workers(self) -> list[subprocess.Popen[bytes]]:
        return [slot.process for slot in self.slots if slot.process is not None]

    def start(self) -> Supervisor:
        self._thread.start()
        return self

    def _watch(self) -> None:
        import logging

        log = logging.getLogger("deepsynthbody")
        while not self._exit.wait(self.POLL_SECONDS):
            with self._lock:
                if self._stopping.is_set():
                    continue
                try:
                    self.check()
                except Exception:  # noqa: BLE001 - the watch goes on whatever one round met
                    log.exception("supervising the workers and Redis")

    def check(self) -> None:
        import logging
        import socket

        import redis

        from workers import recovery

        log = logging.getLogger("deepsynthbody")
        server, now = self.redis_server, time.monotonic()
        if server is not None and not server.alive() and now >= self._redis.next_start:  # type: ignore[attr-defined]
            code = server.process.returncode if server.process is not None else None  # type: ignore[attr-defined]
            if code is not None:
                log.warning("the private Redis %s; starting it again", how_it_ended(code))
            lived, self._redis.started = now - self._redis.started, now
            self._redis.backoff = 0.0 if lived >= self.HEALTHY_SECONDS else min(10.0, max(0.5, self._redis.backoff * 2))
            self._redis.next_start = now + self._redis.backoff
            try:
                server.restart()  # type: ignore[attr-defined]
            except RuntimeError as exc:  # it exited at once, or did not answer: tried again after the pause
                log.error("the private Redis did not start again: %s", exc)
                return
            log.info("the private Redis is back at %s", server.address)  # type: ignore[attr-defined]
        for slot in self.slots:
            if slot.process is not None and (code := slot.process.poll()) is not None:
                log.warning("worker process %d %s; its job runs again, and a new worker starts",
                            slot.process.pid, how_it_ended(code))
                self._dead.append(slot.process.pid)
                lived = now - slot.started
                slot.backoff = 0.0 if lived >= self.HEALTHY_SECONDS else min(10.0, max(0.5, slot.backoff * 2))
                slot.process, slot.next_start = None, now + slot.backoff
        if self._dead:
            try:
                with redis.Redis.from_url(self.redis_url, socket_connect_timeout=2, socket_timeout=10) as connection:
                    for pid in self._dead:
                        recovery.worker_gone(connection, [self.queue], pid=pid, hostname=socket.gethostname())
                self._dead.clear()
            except redis.RedisError as exc:  # Redis is down too: next round
                log.warning("cannot reach Redis to run a dead worker's job again yet: %s", exc)
        for slot in self.slots:
            if slot.process is None and now >= slot.next_start:
                slot.process = spawn(self.worker_command, env=gpu_lists.environment(slot.gpu))
                slot.started = time.monotonic()

    def stop(self, timeout: float = 30, hurry: Callable[[], bool] = lambda: False) -> None:
        """Stop restarting, then stop the workers (all at once, each within `timeout`); Redis is the caller's."""
        with self._lock:
            self._stopping.set()
        stop_all(self.workers, timeout=timeout, hurry=hurry)

    def close(self) -> None:
        """Once every child is stopped: the watching thread ends."""
        self._stopping.set()
        self._exit.set()
        if self._thread.is_alive():
            self._thread.join()
