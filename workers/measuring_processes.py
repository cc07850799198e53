"""The processes a worker measures samples in (an annotated or filtered job), kept for the worker's lifetime; a GPU
worker also encodes per-record formats in them (`workers.encoding_processes`, through `each_piece`).

neurokit2's delineation is mostly Python loops, which threads would run one at a time under the GIL: in one worker
on 2 cores, measuring in the lanes' threads made annotated jobs 0.34 of plain ones. Each batch is cut into one piece
per process instead, measured side by side, and the results come back in order (a batch's measurements do not
depend on how it was cut).

The samples do not travel through a pipe (pickled, ~0.4 ms per 12-lead ECG on 2 cores, a tenth of measuring it):
the worker copies each batch into a slot of a memory map it shares with the processes, and they read it there.
The processes are forked from the worker, with the map, when a job that measures starts, before its lanes do
(`prepare`; a later job reuses them): they start in milliseconds with neurokit2 already imported. They ignore
Ctrl-C (the worker decides what an interrupt means) and leave when the worker is gone, even if it was killed. A
process that dies fails the batch (RQ runs the job again) and the next batch forks a new set; a batch larger than
the slots waits until none is in use and forks a new set with larger ones. Where the platform cannot fork, the
caller's thread measures.
"""

from __future__ import annotations

import mmap
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class _Processes:
    pool: ProcessPoolExecutor
    size: int  # processes
    buffer: mmap.mmap  # SLOTS slots of `slot_bytes`, shared with the processes
    slot_bytes: int
    free: list[int]  # slots not in use, of SLOTS


SLOTS = 2  # batches being measured at once (a worker measures one at a time; a second caller need not wait)
_condition = threading.Condition()
_current: _Processes | None = None
_shared: mmap.mmap | None = None  # the processes' view of the current map (inherited when they were forked)


def available() -> bool:
    """Whether this platform can fork measuring processes."""
    return "fork" in multiprocessing.get_all_start_methods()


def measure_each(function: Callable[..., Any], samples: np.ndarray, processes: int, *args: Any) -> list[Any]:
    """[function(sample, *args) for sample in samples], in up to `processes` processes side by side (one caller at
    a time per slot: a worker's encoder thread; callers beyond the slots wait)."""
    return [result for piece in each_piece(_each, samples, processes, function, *args) for result in piece]


def each_piece(function: Callable[..., Any], samples: np.ndarray, processes: int, *args: Any) -> list[Any]:
    """`samples` cut into up to `processes` runs of consecutive samples, `function(run, first, *args)` of each in
    the processes side by side (`first`: the run's first sample's index in `samples`), the results in order. The
    run lives in memory shared with the caller and is reused once the call returns: `function` keeps no view of it.
    Where the platform cannot fork, one call over all of `samples` in the caller's thread."""
    if not available():
        return [function(samples, 0, *args)]
    samples = np.ascontiguousarray(samples)
    processes_, slot = _acquire(processes, samples.nbytes)
    try:
        offset = slot * processes_.slot_bytes
        np.ndarray(samples.shape, samples.dtype, processes_.buffer, offset)[...] = samples
        per_sample = samples.nbytes // max(1, len(samples))
        bounds = np.linspace(0, len(samples), min(processes, len(samples)) + 1).astype(int)
        pieces = [(function, offset + a * per_sample, int(a), b - a, samples.shape[1:], samples.dtype.str, args)
                  for a, b in zip(bounds, bounds[1:]) if b > a]
        return list(processes_.pool.map(_run, pieces))
    except BrokenProcessPool:
        _forget(processes_)
        raise
    finally:
        _release(processes_, slot)


def prepare(processes: int, batch_bytes: int) -> None:
    """Fork the processes now, with slots for batches of `batch_bytes`, unless those running already do: before a
    job's lanes start, so that no thread is running inference when the worker forks."""
    if not available():
        return
    prepared, slot = _acquire(processes, batch_bytes)
    _release(prepared, slot)


def pids() -> list[int]:
    """The measuring processes' ids (none before the worker first measures)."""
    with _condition:
        return [] if _current is None else [process.pid for process in _current.pool._processes.values()]


def stop() -> None:
    """Let the processes go (the next measurement forks new ones)."""
    with _condition:
        if _current is not None:
            _forget(_current)


def _acquire(size: int, nbytes: int) -> tuple[_Processes, int]:
    global _current
    with _condition:
        while True:
            current = _current
            fits = current is not None and current.size >= size and current.slot_bytes >= nbytes
            if fits and current is not None and current.free:
                return current, current.free.pop()
            if not fits and (current is None or len(current.free) == SLOTS):  # none in use: replace them
                if current is not None:
                    _forget(current)
                _current = _start(size, nbytes)
                continue
            _condition.wait()


def _release(processes: _Processes, slot: int) -> None:
    with _condition:
        processes.free.append(slot)
        _condition.notify_all()


def _forget(processes: _Processes) -> None:
    global _current
    with _condition:
        processes.pool.shutdown(wait=False, cancel_futures=True)
        if _current is processes:
            _current = None
        _condition.notify_all()


def _start(size: int, slot_bytes: int) -> _Processes:
    global _shared
    buffer = mmap.mmap(-1, max(1, SLOTS * slot_bytes))  # anonymous and shared: the forked processes see the writes
    _shared = buffer
    pool = ProcessPoolExecutor(size, mp_context=multiprocessing.get_context("fork"), initializer=_started,
                               initargs=(os.getpid(),))
    list(pool.map(abs, range(size)))  # forks them all now, while this job's lanes are not yet running
    return _Processes(pool, size, buffer, slot_bytes, list(range(SLOTS)))


def _run(piece: tuple[Callable[..., Any], int, int, int, tuple[int, ...], str, tuple[Any, ...]]) -> Any:
    function, offset, first, count, shape, dtype, args = piece
    samples = np.ndarray((count, *shape), np.dtype(dtype), _shared, offset)  # type: ignore[arg-type]
    return function(samples, first, *args)


def _each(samples: np.ndarray, first: int, function: Callable[..., Any], *args: Any) -> list[Any]:
    return [function(sample, *args) for sample in samples]


def _started(worker: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_leave_with, args=(worker,), name="leave-with-worker", daemon=True).start()


def _leave_with(worker: int) -> None:
    while os.getppid() == worker:
        time.sleep(1.0)
    os._exit(0)
