"""What a running job and its worker tell each other between batches: stop requests and heartbeats.

Two ways a job ends early, told apart because they end differently: a user's cancel (`stop_requested`, RQ's
stop-job command) ends the job for good, and its files go; the worker's own shutdown (`interrupt_requested`,
SIGTERM or SIGINT) puts the job back on its queue, to run again from its start on the next worker.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

HEARTBEAT_SECONDS = 10.0

stop_requested = threading.Event()
interrupt_requested = threading.Event()
_heartbeat: Callable[[], None] | None = None
_last_beat = 0.0


class JobStopped(Exception):
    """Raised between batches when the job was canceled; RQ then marks it stopped, not failed."""


class JobInterrupted(Exception):
    """Raised between batches when the worker is shutting down; the worker queues the job again."""


def attach(heartbeat: Callable[[], None]) -> None:
    global _heartbeat, _last_beat
    stop_requested.clear()  # not interrupt_requested: a shutdown asked for before the job began still holds
    _heartbeat, _last_beat = heartbeat, time.monotonic()


def detach() -> None:
    global _heartbeat
    _heartbeat = None


def between_batches(description: str) -> None:
    """Stop if asked to; otherwise tell RQ the job is alive (so a crashed worker's job is noticed in minutes)."""
    global _last_beat
    if stop_requested.is_set():
        raise JobStopped(f"{description}: stopped on request")
    if interrupt_requested.is_set():
        raise JobInterrupted(f"{description}: interrupted by the worker's shutdown")
    if _heartbeat is not None and time.monotonic() - _last_beat >= HEARTBEAT_SECONDS:
        _heartbeat()
        _last_beat = time.monotonic()
