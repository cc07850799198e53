"""What a running job and its worker tell each other between batches: stop requests and heartbeats."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

HEARTBEAT_SECONDS = 10.0

stop_requested = threading.Event()
_heartbeat: Callable[[], None] | None = None
_last_beat = 0.0


class JobStopped(Exception):
    """Raised between batches when the job was asked to stop; RQ then marks it stopped, not failed."""


def attach(heartbeat: Callable[[], None]) -> None:
    global _heartbeat, _last_beat
    stop_requested.clear()
    _heartbeat, _last_beat = heartbeat, time.monotonic()


def detach() -> None:
    global _heartbeat
    _heartbeat = None


def between_batches(description: str) -> None:
    """Stop if asked to; otherwise tell RQ the job is alive (so a crashed worker's job is noticed in minutes)."""
    global _last_beat
    if stop_requested.is_set():
        raise JobStopped(f"{description}: stopped on request")
    if _heartbeat is not None and time.monotonic() - _last_beat >= HEARTBEAT_SECONDS:
        _heartbeat()
        _last_beat = time.monotonic()
