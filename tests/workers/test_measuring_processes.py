"""The processes a worker measures in: same results as measuring in the thread, in order, whatever the threads;
a dead process fails its batch and the next batch gets new ones; they ignore Ctrl-C and leave with their worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import psutil
import pytest

from workers import measuring_processes

pytestmark = pytest.mark.skipif(not measuring_processes.available(), reason="this platform cannot fork")


def _described(sample: np.ndarray, scale: int) -> tuple[int, int, int]:
    time.sleep(0.02)  # long enough that every process takes a piece
    return int(sample.sum()) * scale, sample.shape[0], os.getpid()


def _pid(sample: np.ndarray) -> int:
    return os.getpid()


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE  # an orphan nobody reaped has left
    except psutil.NoSuchProcess:
        return False


def _samples(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-3000, 3000, size=(count, 50, 3), dtype=np.int16)


@pytest.fixture(autouse=True)
def _fresh_processes() -> None:
    measuring_processes.stop()


def test_a_batch_is_measured_in_processes_side_by_side_in_order() -> None:
    samples = _samples(37)
    measured = measuring_processes.measure_each(_described, samples, 3, 2)
    assert [m[:2] for m in measured] == [(int(s.sum()) * 2, 50) for s in samples]
    pids = {m[2] for m in measured}
    assert pids == set(measuring_processes.pids()) and len(pids) == 3 and os.getpid() not in pids


def test_threads_measuring_at_once_each_get_their_own_samples_back_and_larger_batches_get_larger_slots() -> None:
    batches = [_samples(count, seed) for seed, count in enumerate((8, 8, 30, 8, 64, 5))]
    results: dict[int, list[tuple[int, int, int]]] = {}

    def lane(k: int) -> None:
        for index in range(k, len(batches), 2):
            results[index] = measuring_processes.measure_each(_described, batches[index], 2, 1)

    lanes = [threading.Thread(target=lane, args=(k,)) for k in range(2)]
    for thread in lanes:
        thread.start()
    for thread in lanes:
        thread.join()
    for index, batch in enumerate(batches):
        assert [m[0] for m in results[index]] == [int(s.sum()) for s in batch]


def test_a_process_that_dies_fails_its_batch_and_the_next_batch_gets_new_ones() -> None:
    samples = _samples(4)
    measuring_processes.measure_each(_pid, samples, 2)
    victim = measuring_processes.pids()[0]
    os.kill(victim, signal.SIGKILL)
    with pytest.raises(BrokenProcessPool):
        for _ in range(50):  # the pool notices the death at its next call
            measuring_processes.measure_each(_pid, samples, 2)
            time.sleep(0.05)
    assert victim not in measuring_processes.measure_each(_pid, samples, 2)


def test_the_processes_ignore_ctrl_c_and_leave_when_their_worker_is_killed() -> None:
    script = ("import numpy as np, sys, time\n"
              "from workers import measuring_processes as m\n"
              "import os\n"
              "m.measure_each(lambda_pid, np.zeros((8, 2)), 2)\n"
              "print(*m.pids(), flush=True)\n"
              "time.sleep(60)\n")
    preamble = "import os\ndef lambda_pid(sample):\n    return os.getpid()\n"  # pickled by name: __main__
    worker = subprocess.Popen([sys.executable, "-c", preamble + script], stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout is not None
        pids = [int(p) for p in worker.stdout.readline().split()]
        assert len(pids) == 2
        os.kill(pids[0], signal.SIGINT)
        time.sleep(0.5)
        assert all(_alive(pid) for pid in pids)
        worker.kill()
        worker.wait()
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(pid) for pid in pids), "measuring processes outlived their worker"
    finally:
        worker.kill()
        worker.wait()
        worker.stdout.close()  # type: ignore[union-attr]


def test_processes_prepared_for_a_jobs_batches_measure_them_all_without_forking_again() -> None:
    batch = _samples(16)
    measuring_processes.prepare(2, batch.nbytes)  # what a job does before its lanes start
    forked = measuring_processes.pids()
    assert len(forked) == 2
    for seed in range(3):
        measuring_processes.measure_each(_pid, _samples(16, seed), 2)
    assert measuring_processes.pids() == forked
    measuring_processes.prepare(2, batch.nbytes)  # the next job: the same processes
    assert measuring_processes.pids() == forked
