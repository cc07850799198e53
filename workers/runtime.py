"""ONNX Runtime sessions: created once per worker process and reused by every job."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from deepsynthbody.core import gpus as gpu_lists
from deepsynthbody.core.errors import ModelInvalid
from deepsynthbody.core.settings import Settings, usable_cores
from model_store.manifest import ParameterInput
from model_store.store import ModelEntry, sha256_file
from workers import noise, postprocess

log = logging.getLogger(__name__)

# Measured: CPU batches of 8-64 are within noise of each other on 2 cores; on an H100 the generate stage runs
# 2-4% faster at 1024 than at 512 and 256 (docs/bench-gpu-h100.json).
DEFAULT_BATCH = {"CUDAExecutionProvider": 1024, "CPUExecutionProvider": 32}

_sessions: dict[str, ModelRuntime] = {}


@dataclass
class ModelRuntime:
    entry: ModelEntry
    session: ort.InferenceSession
    provider: str
    arithmetic: str  # fp32, tf32 (fp32 on a GPU's TF32 matrix units) or a variant's precision
    stream: Any = None  # the CUDA stream onnxruntime runs on (a cupy Stream), when the GPU path is available
    lanes: int = 1  # batches made side by side on the CPU, each by a single-threaded run
    measuring_processes: int = 1  # processes an annotated or filtered job measures in (workers.measuring_processes)
    _gpu: dict[tuple[Any, ...], Any] = field(default_factory=dict)

    def gpu_pipeline(self, params: dict[str, Any], batch: int) -> Any:
        """The GPU path's pipeline for these parameters (`workers.cuda_runtime`), or None where it does not apply."""
        if self.stream is None:
            return None
        from workers import cuda_runtime

        if not cuda_runtime.supports(self.entry.manifest):
            return None
        key = (batch, *sorted(params.items()))
        if key not in self._gpu:
            self._gpu.clear()  # one set of device buffers per process
            self._gpu[key] = cuda_runtime.CudaSignalPipeline(self.session, self.stream, self.entry.manifest, params, batch)
        return self._gpu[key]

    def run(self, noise: dict[str, np.ndarray], params: dict[str, Any]) -> np.ndarray:
        feeds: dict[str, np.ndarray] = dict(noise)
        for spec in self.entry.manifest.inputs:
            if isinstance(spec, ParameterInput):
                feeds[spec.name] = np.asarray([params[spec.parameter]], dtype=spec.dtype)
        (output,) = self.session.run([self.entry.manifest.output.tensor], feeds)
        return output

    def postprocess(self, raw: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        return postprocess.to_samples(raw, self.entry.manifest.output, params)

    def samples(self, seed: int, start: int, count: int, params: dict[str, Any]) -> np.ndarray:
        """Samples start .. start+count-1 of `seed`, in the output's final dtype and layout."""
        return self.postprocess(self.run(noise.draw(self.entry.manifest.noise_inputs, seed, start, count), params), params)


def cuda_available(settings: Settings) -> bool:
    return settings.use_cuda and "CUDAExecutionProvider" in ort.get_available_providers()


def _cuda_providers(settings: Settings) -> tuple[list[Any], Any]:
    """The CUDA provider, on a stream of our own when CuPy is there (the GPU path needs both)."""
    if hasattr(ort, "preload_dlls"):
        ort.preload_dlls()  # CUDA and cuDNN from the nvidia-* wheels, where they are installed that way
    try:
        from workers import cuda_runtime
    except ImportError as error:  # not installed, or installed without what it needs
        log.warning("CuPy could not be imported (%s): the CUDA provider runs without the GPU path "
                    "(pip install -e '.[gpu]')", error)
        return ["CUDAExecutionProvider", "CPUExecutionProvider"], None
    stream = cuda_runtime.new_stream()
    options = cuda_runtime.provider_options(stream, tf32=settings.cuda_tf32)
    return [("CUDAExecutionProvider", options), "CPUExecutionProvider"], stream


def _gpu_session(path: Path, settings: Settings, model: str) -> tuple[ort.InferenceSession | None, Any]:
    """A session on the GPU and its stream; (None, None), said in the log, where this process has no GPU it can use.

    onnxruntime-gpu lists its CUDA provider whether or not a GPU is there: a GPU worker's container started without
    its GPU, `CUDA_VISIBLE_DEVICES` naming one the host lacks, or a driver too old for the CUDA libraries all show
    only when a session starts. Such a worker then runs as a CPU worker does, rather than failing every job."""
    try:
        providers, stream = _cuda_providers(settings)
        session = ort.InferenceSession(str(path), ort.SessionOptions(), providers=providers)
    except Exception as error:  # CuPy's CUDARuntimeError, onnxruntime's own: whatever stops the GPU from starting
        reason = described(error)
    else:
        if session.get_providers()[0] == "CUDAExecutionProvider":
            return session, stream
        reason = "onnxruntime could not start its CUDA provider"
    log.error("%s: no GPU this worker can use %s; it runs on the CPU, as a CPU worker does. %s", model,
              without_gpu(reason), WITHOUT_GPU_REMEDY)
    return None, None


WITHOUT_GPU_REMEDY = "Give it a GPU, or set DSB_USE_CUDA=false to make it a CPU worker"


def without_gpu(reason: str) -> str:
    """Why a GPU worker runs on the CPU, as its logs say it (here, and as it starts: `workers.worker`)."""
    return f"({gpu_lists.VARIABLE}={os.environ.get(gpu_lists.VARIABLE, 'unset')}; {reason})"


def load(entry: ModelEntry, settings: Settings, precision: str = "fp32") -> ModelRuntime:
    """The process-wide runtime of a model version at a precision; the artifact's sha256 is checked once, on load."""
    if precision not in entry.manifest.precisions:
        raise ModelInvalid(f"{entry.manifest.key} has no {precision} variant (it has {entry.manifest.precisions})")
    path, expected = entry.artifact_for(precision), entry.manifest.artifact_sha256(precision)
    key = f"{entry.manifest.key}@{expected}"
    if key not in _sessions:
        actual = sha256_file(path) if path.exists() else "missing"
        if actual != expected:
            raise ModelInvalid(f"artifact {path} does not match its manifest (sha256 {actual}, expected {expected})")
        cores = settings.ort_threads or usable_cores()
        session, stream = _gpu_session(path, settings, entry.manifest.key) if cuda_available(settings) else (None, None)
        on_gpu = session is not None
        if session is None:  # `cores` single-threaded runs side by side (workers.pipeline), not one run over all cores
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        arithmetic = "tf32" if precision == "fp32" and on_gpu and settings.cuda_tf32 else precision
        _sessions[key] = ModelRuntime(entry, session, session.get_providers()[0], arithmetic, stream,
                                      lanes=1 if on_gpu else cores, measuring_processes=cores)
        log.info("loaded %s on %s", entry.manifest.key, _sessions[key].provider)
    return _sessions[key]


# How CUDA errors read: CuPy's exception types, onnxruntime's messages ("CUDA failure 700: an illegal memory access
# was encountered", "CUDNN failure ...", "CUBLAS failure ...", "CUDA error cudaErrorLaunchFailure ...")
_CUDA_ERROR_TYPES = frozenset({"CUDARuntimeError", "CUDADriverError"})
_CUDA_ERROR_MARKERS = ("CUDA failure", "CUDA error", "CUDNN failure", "CUBLAS failure")


def gpu_failure(error: BaseException | None) -> bool:
    """Whether `error` is the GPU's own: a CUDA context that has seen an illegal address, an ECC error or a GPU
    fallen off the bus fails every call after it, so the process that holds it must end (`workers.worker`)."""
    text = str(error)
    return type(error).__name__ in _CUDA_ERROR_TYPES or any(marker in text for marker in _CUDA_ERROR_MARKERS)


def described(error: BaseException) -> str:
    """An error as a log line quotes it: its type and the first line of its message."""
    return f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0]}"


def batch_size(model: ModelRuntime, settings: Settings) -> int:
    return settings.batch_size or DEFAULT_BATCH.get(model.provider, 32)
