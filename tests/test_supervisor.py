"""`serve --gpus`: the supervisor starts each worker with its slot's GPU as CUDA_VISIBLE_DEVICES, and a worker it
starts in place of a dead one gets the same GPU."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import psutil

from deepsynthbody.core.settings import Settings
from deepsynthbody.supervisor import Supervisor
from tests.conftest import wait_for

SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]  # a worker that only needs to be alive


def _environ(pid: int) -> dict[str, str]:
    """The environment the process started with."""
    return dict(line.split("=", 1) for line in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in line)


def _gpu(pid: int) -> str | None:
    return _environ(pid).get("CUDA_VISIBLE_DEVICES")


def test_serves_workers_are_dealt_the_gpus_and_a_restarted_one_keeps_its_gpu(settings: Settings) -> None:
    supervisor = Supervisor(SLEEPER, 3, str(settings.redis_url), f"sup-{uuid.uuid4().hex[:8]}", gpus=["2", "5"]).start()
    try:
        wait_for(lambda: len(supervisor.workers) == 3, 30, "3 workers")
        first = [slot.process.pid for slot in supervisor.slots]  # type: ignore[union-attr]
        assert [_gpu(pid) for pid in first] == ["2", "5", "2"]
        assert {_environ(pid).get("CUDA_DEVICE_ORDER") for pid in first} == {"PCI_BUS_ID"}  # nvidia-smi's numbers
        psutil.Process(first[1]).kill()
        wait_for(lambda: supervisor.slots[1].process is not None and supervisor.slots[1].process.pid != first[1],
                 30, "a worker in place of the killed one")
        assert _gpu(supervisor.slots[1].process.pid) == "5"  # type: ignore[union-attr]
    finally:
        supervisor.stop(timeout=10)
        supervisor.close()
    assert all(not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE for pid in first)


def test_without_gpus_workers_inherit_the_environment_as_it_is(settings: Settings) -> None:
    supervisor = Supervisor(SLEEPER, 1, str(settings.redis_url), f"sup-{uuid.uuid4().hex[:8]}").start()
    try:
        wait_for(lambda: len(supervisor.workers) == 1, 30, "a worker")
        import os

        assert _gpu(supervisor.workers[0].pid) == os.environ.get("CUDA_VISIBLE_DEVICES")
    finally:
        supervisor.stop(timeout=10)
        supervisor.close()
