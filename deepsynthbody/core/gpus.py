"""Which GPU each of a host's workers runs on (`serve --gpus`, `worker --gpus`): one GPU per worker, given to it
as CUDA_VISIBLE_DEVICES, the variable CUDA reads when a process first uses it. The worker then sees that GPU alone,
as its device 0, and nothing in the worker needs to know which one it is. Workers are dealt the GPUs in turn
(several per GPU when there are more workers than GPUs); a worker started in place of a dead one takes a GPU with
the fewest workers, the one its predecessor left."""

from __future__ import annotations

import os
import re
import subprocess
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

VARIABLE = "CUDA_VISIBLE_DEVICES"
ORDER = "CUDA_DEVICE_ORDER"  # PCI_BUS_ID: CUDA numbers the GPUs as nvidia-smi does (its default: fastest first)

# What CUDA_VISIBLE_DEVICES takes: a device index as nvidia-smi lists it, or a GPU's or MIG instance's UUID
_ID = re.compile(r"\d+|GPU-[0-9a-fA-F-]+|MIG-[0-9A-Za-z/-]+")


class GpuListError(ValueError):
    """A --gpus value that names no GPU, or one twice: says what to write instead."""


def parse(text: str) -> list[str]:
    """`0,1,2,3` (or UUIDs, as `nvidia-smi -L` shows them) as a list of GPU ids, in order."""
    ids = [part.strip() for part in text.split(",")]
    wrong = [part for part in ids if not _ID.fullmatch(part)]
    if wrong:
        raise GpuListError(f"{text!r}: {wrong[0]!r} is not a GPU id (give indexes as nvidia-smi lists them, separated "
                           "by commas: 0,1,2,3; or their UUIDs, GPU-...)")
    twice = sorted({part for part in ids if ids.count(part) > 1})
    if twice:
        raise GpuListError(f"{text!r} names GPU {twice[0]} twice "
                           "(one worker per GPU: --workers N puts several on each)")
    return ids


def installed() -> list[tuple[str, str]] | None:
    """The host's GPUs as nvidia-smi lists them, (index, UUID) each; None where nvidia-smi is not there or fails.
    Asked of nvidia-smi, in a process of its own, because the process that forks the workers must not use CUDA."""
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=index,uuid", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    rows = [line.split(",", 1) for line in done.stdout.splitlines() if "," in line]
    return [(index.strip(), uuid.strip()) for index, uuid in rows]


def not_installed(gpus: list[str], host: list[tuple[str, str]]) -> list[str]:
    """The ids of `gpus` that name none of the host's GPUs (MIG instances, which nvidia-smi lists elsewhere, pass)."""
    known = {name for gpu in host for name in gpu}
    return [gpu for gpu in gpus if gpu not in known and not gpu.startswith("MIG-")]


def worker_count(workers: int | None, gpus: list[str] | None) -> int:
    """How many workers to start: as asked, or one per GPU when only the GPUs are given. Fewer workers than GPUs
    would leave a GPU idle, so that is refused (raises ValueError saying so)."""
    if not gpus:
        return 1 if workers is None else workers
    if workers is None:
        return len(gpus)
    if workers < len(gpus):
        idle = ",".join(gpus[workers:])
        raise ValueError(f"--workers {workers} leaves GPU {idle} without a worker: give --workers {len(gpus)} or "
                         f"more (several per GPU), or fewer GPUs in --gpus")
    return workers


def dealt(slot: int, gpus: list[str]) -> str:
    """The GPU of the `slot`-th worker (counting from 0)."""
    return gpus[slot % len(gpus)]


def least_used(gpus: list[str], in_use: Iterable[str]) -> str:
    """The GPU running the fewest of the workers alive (the first such in the list)."""
    counts = Counter(in_use)
    return min(gpus, key=lambda gpu: counts[gpu])


def _variables(gpu: str) -> dict[str, str]:
    return {VARIABLE: gpu, ORDER: os.environ.get(ORDER, "PCI_BUS_ID")}  # an order set by the user stays


def environment(gpu: str | None) -> dict[str, str] | None:
    """The environment of a worker process started on `gpu` (None: this process's own)."""
    return None if gpu is None else {**os.environ, **_variables(gpu)}


def use(gpu: str) -> None:
    """This process runs on `gpu` (before anything in it uses CUDA)."""
    os.environ.update(_variables(gpu))


@contextmanager
def visible(gpu: str) -> Iterator[None]:
    """This process's environment set for `gpu` while a worker is forked from it, then as it was."""
    before = {name: os.environ.get(name) for name in (VARIABLE, ORDER)}
    use(gpu)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value
