"""Between batches a job heartbeats (throttled) and honours stop requests."""

from __future__ import annotations

import pytest

from workers import lifecycle


def test_heartbeats_are_throttled_and_stop_requests_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    beats: list[int] = []
    clock = iter([0.0, 1.0, 11.0, 12.0, 30.0])
    monkeypatch.setattr(lifecycle.time, "monotonic", lambda: next(clock))
    lifecycle.attach(lambda: beats.append(1))  # t=0
    lifecycle.between_batches("job")  # t=1: too soon
    lifecycle.between_batches("job")  # t=11: beat (then t=12 recorded)
    assert beats == [1]
    lifecycle.stop_requested.set()
    with pytest.raises(lifecycle.JobStopped):
        lifecycle.between_batches("job")
    lifecycle.detach()
    lifecycle.attach(lambda: None)  # t=30: a new job starts clean
    assert not lifecycle.stop_requested.is_set()
    lifecycle.detach()


def test_a_shutdown_interrupts_the_job_and_a_cancel_wins_over_it() -> None:
    lifecycle.interrupt_requested.set()  # SIGTERM arrived: the job ends at its next batch, to be queued again
    try:
        lifecycle.attach(lambda: None)
        assert lifecycle.interrupt_requested.is_set()  # a shutdown asked for before the job began still holds
        with pytest.raises(lifecycle.JobInterrupted):
            lifecycle.between_batches("job")
        lifecycle.stop_requested.set()  # and a user's cancel: the job ends for good
        with pytest.raises(lifecycle.JobStopped):
            lifecycle.between_batches("job")
    finally:
        lifecycle.detach()
        lifecycle.interrupt_requested.clear()
        lifecycle.stop_requested.clear()
