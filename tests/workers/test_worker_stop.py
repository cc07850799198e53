"""A worker's command thread (RQ's pubsub thread, which takes stop-job and shutdown commands) ends when the worker
stops, whatever it was doing: a stopping worker never waits out the thread's 60-s wait (workers.worker)."""

from __future__ import annotations

import time
import uuid

from redis import Redis
from rq import Queue

from deepsynthbody.core.settings import Settings
from tests.conftest import wait_for
from workers.worker import GenerationWorker


def _subscribed_worker(settings: Settings) -> GenerationWorker:
    redis = Redis.from_url(str(settings.redis_url))
    worker = GenerationWorker([Queue(f"stop-{uuid.uuid4().hex[:8]}", connection=redis)], connection=redis)
    worker.subscribe()
    wait_for(lambda: worker.pubsub.subscribed and worker.pubsub_thread.is_alive(), 10, "the command thread")
    return worker


def test_a_subscribed_command_thread_ends_with_the_unsubscribe(settings: Settings) -> None:
    worker = _subscribed_worker(settings)
    thread = worker.pubsub_thread
    started = time.monotonic()
    worker.unsubscribe()
    wait_for(lambda: not thread.is_alive(), 10, "the command thread to end")
    assert time.monotonic() - started < 10


def test_unsubscribe_returns_at_once_even_when_the_thread_waits_for_a_subscription(settings: Settings) -> None:
    """The race a stopping worker can lose: the thread read the UNSUBSCRIBE reply and went back to waiting, up to
    60 s, for a subscription that never comes (redis-py >= 8.2's `stop()` waits for it). Here the thread is put in
    that state first; unsubscribing still takes about a second, not a minute."""
    worker = _subscribed_worker(settings)
    worker.pubsub.unsubscribe()
    wait_for(lambda: not worker.pubsub.subscribed, 10, "the thread to read the UNSUBSCRIBE reply")
    time.sleep(0.2)  # back in its wait
    started = time.monotonic()
    worker.unsubscribe()
    assert time.monotonic() - started < 10
