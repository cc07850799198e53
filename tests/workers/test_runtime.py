"""A GPU worker that finds no GPU it can use runs as a CPU worker, and says so, instead of failing every job.

onnxruntime-gpu lists its CUDA provider whether or not a GPU is there, so these tests list it the same way on this
GPU-less machine; everything after that (the sessions, the samples) is the real onnxruntime on the CPU."""

from __future__ import annotations

import logging
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from deepsynthbody.core.settings import Settings
from model_store.store import open_store
from workers import runtime

PARAMS = {"leads": 12}
AS_ONNXRUNTIME_GPU_LISTS = ["CUDAExecutionProvider", "CPUExecutionProvider"]


def _cpu_samples(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> np.ndarray:
    monkeypatch.setattr(runtime, "_sessions", {})
    model = runtime.load(open_store(settings).resolve("cardiovascular", "ecg"), settings)
    assert model.provider == "CPUExecutionProvider"
    return model.samples(3, 0, 4, PARAMS)


def _load_believing_in_cuda(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> runtime.ModelRuntime:
    monkeypatch.setattr(runtime, "_sessions", {})
    monkeypatch.setattr(runtime.ort, "get_available_providers", lambda: AS_ONNXRUNTIME_GPU_LISTS)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7")
    return runtime.load(open_store(settings).resolve("cardiovascular", "ecg"), settings)


def _no_device(*args: object, **kwargs: object) -> None:
    raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")  # CuPy's CUDARuntimeError is one


# onnxruntime's CPU build warns that it lacks the provider listed here; onnxruntime-gpu, which has it, falls back
@pytest.mark.filterwarnings("ignore:Specified provider 'CUDAExecutionProvider' is not in available provider names")
@pytest.mark.parametrize("cupy", ["installed, no device", "not installed"])
def test_a_worker_without_a_usable_gpu_runs_as_a_cpu_worker_and_says_why(
        cupy: str, settings: Settings, ecg_model_dir: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    expected = _cpu_samples(settings, monkeypatch)
    if cupy == "not installed":
        monkeypatch.setitem(sys.modules, "workers.cuda_runtime", None)  # `import` raises ImportError
    else:  # CuPy fails at the first CUDA call, the stream, as it does where no GPU is visible
        monkeypatch.setitem(sys.modules, "workers.cuda_runtime", types.SimpleNamespace(new_stream=_no_device))
    cores = settings.ort_threads or runtime.usable_cores()

    with caplog.at_level(logging.ERROR, logger=runtime.__name__):
        model = _load_believing_in_cuda(settings, monkeypatch)

    assert (model.provider, model.stream, model.lanes, model.measuring_processes) == (
        "CPUExecutionProvider", None, cores, cores)  # the CPU worker's lanes, not one run on all cores
    assert model.session.get_session_options().intra_op_num_threads == 1
    assert model.arithmetic == "fp32"
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    message = record.getMessage()
    assert "no GPU this worker can use (CUDA_VISIBLE_DEVICES=7" in message
    assert "runs on the CPU" in message and "DSB_USE_CUDA=false" in message
    if cupy == "installed, no device":
        assert "RuntimeError: cudaErrorNoDevice" in message
    else:
        assert "onnxruntime could not start its CUDA provider" in message
    assert np.array_equal(model.samples(3, 0, 4, PARAMS), expected)


def test_without_the_cuda_provider_no_gpu_is_tried(settings: Settings, ecg_model_dir: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "workers.cuda_runtime", types.SimpleNamespace(new_stream=_no_device))
    with caplog.at_level(logging.ERROR, logger=runtime.__name__):
        _cpu_samples(settings.model_copy(update={"use_cuda": True}), monkeypatch)
        monkeypatch.setattr(runtime.ort, "get_available_providers", lambda: AS_ONNXRUNTIME_GPU_LISTS)
        _cpu_samples(settings.model_copy(update={"use_cuda": False}), monkeypatch)  # DSB_USE_CUDA=false
    assert not caplog.records


class CUDARuntimeError(RuntimeError):  # CuPy's, by name (cupy_backends.cuda.api.runtime)
    pass


@pytest.mark.parametrize(("error", "the_gpus"), [
    (CUDARuntimeError("cudaErrorIllegalAddress: an illegal memory access was encountered"), True),
    (RuntimeError("[ONNXRuntimeError] : 1 : FAIL : CUDA failure 700: an illegal memory access was encountered"), True),
    (RuntimeError("[ONNXRuntimeError] : 1 : FAIL : CUDA error cudaErrorLaunchFailure:unspecified launch"), True),
    (RuntimeError("[ONNXRuntimeError] : 1 : FAIL : CUDNN failure 4: CUDNN_STATUS_INTERNAL_ERROR"), True),
    (RuntimeError("[ONNXRuntimeError] : 1 : FAIL : CUBLAS failure 13: CUBLAS_STATUS_EXECUTION_FAILED"), True),
    (RuntimeError("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Got invalid dimensions for input"), False),
    (OSError(28, "No space left on device"), False),
    (None, False),
])
def test_a_gpu_failure_is_told_from_the_jobs_own_errors(error: BaseException | None, the_gpus: bool) -> None:
    assert runtime.gpu_failure(error) is the_gpus
