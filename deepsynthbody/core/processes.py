"""Child processes of `serve` that die with it, even when it is killed without a chance to clean up.

Each child runs in a session of its own: Ctrl-C in a terminal signals the terminal's foreground process
group, which is then `serve` alone, and `serve` stops its children itself, in order (the API, then the
workers, then the Redis they need to stop cleanly). Had they been in the foreground group, the private
Redis would stop at the same moment as the workers, which then fail to deregister from it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(args: Sequence[str], **kwargs: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen(list(args), preexec_fn=_die_with_parent,  # type: ignore[call-overload]
                            start_new_session=True, **kwargs)


def stop(process: subprocess.Popen[bytes] | None, timeout: float = 30,
         hurry: Callable[[], bool] = lambda: False) -> None:
    """SIGTERM, then SIGKILL to its process group after `timeout` seconds, or as soon as `hurry()` says so
    (a second Ctrl-C)."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    deadline = time.monotonic() + timeout
    while process.poll() is None:
        if hurry() or time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # its group: a worker pool's workers too
            process.wait()
            return
        try:
            process.wait(timeout=0.1)
        except subprocess.TimeoutExpired:
            pass


def stop_all(children: Sequence[subprocess.Popen[bytes] | None], timeout: float = 30,
             hurry: Callable[[], bool] = lambda: False) -> None:
    """`stop` for several at once: SIGTERM to all, then each is waited for within the same `timeout`."""
    running = [child for child in children if child is not None and child.poll() is None]
    for child in running:
        with contextlib.suppress(ProcessLookupError):
            child.terminate()
    deadline = time.monotonic() + timeout
    for child in running:
        stop(child, timeout=max(0.0, deadline - time.monotonic()), hurry=hurry)


def how_it_ended(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"
