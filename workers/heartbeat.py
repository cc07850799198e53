"""A worker's heartbeat every INTERVAL_SECONDS, idle or busy, from a thread of its own.

RQ heartbeats an idle worker once per blocking dequeue (every 405 s by default) and a busy one when the job
asks (here every 10 s between batches), so RQ's `last_heartbeat` of a worker that was SIGKILLed looks fresh for
minutes. With this thread it is never older than a few seconds while the process lives: `/readyz` counts a
worker as alive while its `last_heartbeat` is under `LIVE_SECONDS` old (`app.routes.health`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from redis.exceptions import RedisError
from rq.worker import BaseWorker

INTERVAL_SECONDS = 2.0
LIVE_SECONDS = 10.0  # a worker whose last heartbeat is older than this is taken for dead


def keep_alive(worker: BaseWorker) -> Callable[[], None]:
    """Heartbeat `worker` from a daemon thread; the function returned stops it (and waits for a beat under way,
    so none lands after the worker's registration is gone)."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(INTERVAL_SECONDS):
            try:
                worker.heartbeat()
            except RedisError:  # Redis away: the worker's own loop reports and reconnects
                pass

    thread = threading.Thread(target=beat, name=f"heartbeat-{worker.name}", daemon=True)
    thread.start()

    def stop_beating() -> None:
        stop.set()
        if thread is not threading.current_thread():
            thread.join(timeout=5)

    return stop_beating
