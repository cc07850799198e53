"""The GPU worker container's health check: healthy only where a worker would run on a GPU."""

from __future__ import annotations

import subprocess
import sys
import types

import onnxruntime
import pytest

from tests.conftest import ROOT
from workers import gpu_health


def test_on_this_cpu_only_install_it_fails_saying_what_to_install() -> None:
    result = subprocess.run([sys.executable, "-m", "workers.gpu_health"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip() == (f"not usable: onnxruntime {onnxruntime.__version__} has no CUDA provider: pip "
                                     "uninstall onnxruntime && pip install -e '.[gpu]' (onnxruntime-gpu and CuPy)")


class _CUDARuntimeError(RuntimeError):
    pass


def _cupy(count: int | None) -> types.ModuleType:
    """CuPy as it answers on a host with `count` GPUs (None: a driver too old for its CUDA runtime)."""
    def device_count() -> int:
        if count is None:
            raise _CUDARuntimeError("cudaErrorInsufficientDriver: CUDA driver version is insufficient for CUDA "
                                    "runtime version")
        return count

    runtime = types.SimpleNamespace(getDeviceCount=device_count, CUDARuntimeError=_CUDARuntimeError)
    module = types.ModuleType("cupy")
    module.cuda = types.SimpleNamespace(runtime=runtime)  # type: ignore[attr-defined]
    return module


@pytest.mark.parametrize(("cupy", "expected"), [
    (None, "CuPy cannot be imported"),
    (_cupy(None), "the CUDA runtime finds no GPU it can use: cudaErrorInsufficientDriver"),
    (_cupy(0), "the CUDA runtime sees no GPU"),
    (_cupy(2), None),
])
def test_with_onnxruntime_gpu_it_asks_the_cuda_runtime_for_a_gpu(cupy: types.ModuleType | None, expected: str | None,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # onnxruntime-gpu lists its CUDA provider with or without a GPU: the GPU is asked of CuPy
    listed = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: listed)
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    problem = gpu_health.problem()
    if expected is None:
        assert problem is None
    else:
        assert problem is not None and problem.startswith(expected), problem
