"""How `--gpus` deals GPUs to workers (`deepsynthbody.core.gpus`); the workers themselves: tests/test_supervisor.py
(`serve`) and tests/workers/test_pool.py (`worker`)."""

from __future__ import annotations

import os

import pytest

from deepsynthbody.core import gpus


def test_a_forked_worker_gets_its_gpu_and_the_pool_keeps_its_own_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "FASTEST_FIRST")  # the user's choice stays
    with gpus.visible("3"):
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "3" and os.environ["CUDA_DEVICE_ORDER"] == "FASTEST_FIRST"
    assert "CUDA_VISIBLE_DEVICES" not in os.environ and os.environ["CUDA_DEVICE_ORDER"] == "FASTEST_FIRST"
    monkeypatch.delenv("CUDA_DEVICE_ORDER")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    with gpus.visible("1"):
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "1" and os.environ["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1" and "CUDA_DEVICE_ORDER" not in os.environ


def test_workers_are_dealt_gpus_in_turn_and_a_replacement_takes_the_least_used() -> None:
    assert [gpus.dealt(i, ["0", "1", "2"]) for i in range(7)] == ["0", "1", "2", "0", "1", "2", "0"]
    assert gpus.least_used(["0", "1", "2"], ["0", "2", "0", "2"]) == "1"
    assert gpus.least_used(["0", "1"], ["0", "1"]) == "0"


UUID = "GPU-3a23c669-1f69-c64e-cf85-44e9b07e7a2a"  # as `nvidia-smi -L` shows one


@pytest.mark.parametrize(("text", "ids"), [("0,1,2,3", ["0", "1", "2", "3"]), (" 1 , 0", ["1", "0"]), (UUID, [UUID]),
                                           ("MIG-GPU-3a23c669/1/0", ["MIG-GPU-3a23c669/1/0"])])
def test_gpu_ids_as_cuda_takes_them(text: str, ids: list[str]) -> None:
    assert gpus.parse(text) == ids


@pytest.mark.parametrize(("workers", "listed", "count"), [(None, None, 1), (3, None, 3), (None, ["0", "1"], 2),
                                                          (4, ["0", "1"], 4)])
def test_one_worker_per_gpu_unless_asked_for_more(workers: int | None, listed: list[str] | None, count: int) -> None:
    assert gpus.worker_count(workers, listed) == count
