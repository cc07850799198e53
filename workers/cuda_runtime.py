"""The GPU path for signal generators: noise, inference and int16 conversion stay on the GPU.

One CUDA stream carries the noise kernel, onnxruntime's kernels (the stream is the CUDA execution
provider's `user_compute_stream`, inputs and output bound to fixed device buffers with IO binding) and
the int16 kernel; a second stream copies each batch's int16 samples into pinned host memory while the
next batch is generated. Every batch is run at the full batch shape (a short last batch is padded), so
cuDNN sees one shape and picks its algorithms once, whatever the chunking.

Noise and int16 conversion are bit-identical to the CPU path (`workers.cuda_kernels`); the model's own
float arithmetic on the GPU differs from the CPU's by rounding (measured in `deepsynthbody bench-gpu`).
Needs CuPy (`pip install -e '.[gpu]'`); imported only by workers that run the CUDA provider.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import cupy as cp
import numpy as np
import onnxruntime as ort

from model_store.manifest import ParameterInput, SignalOutput
from workers.cuda_kernels import PHILOX_UNIFORM, SIGNAL_KERNEL, signal_kernel_source

THREADS = 256
SLOTS = 3  # pinned host buffers: one being encoded, one being copied into, one being generated


def supports(manifest: Any) -> bool:
    """Signal outputs whose noise is all uniform: the rest use the generic path (numpy in, numpy out)."""
    return isinstance(manifest.output, SignalOutput) and all(
        spec.distribution == "uniform" for spec in manifest.noise_inputs)


def new_stream() -> cp.cuda.Stream:
    """A stream of our own; where no GPU can be used, CUDARuntimeError (asked first: a Stream that fails to start
    prints a second error as it is collected)."""
    cp.cuda.runtime.getDeviceCount()
    return cp.cuda.Stream(non_blocking=True)


def provider_options(stream: cp.cuda.Stream, tf32: bool = False, algo_search: str = "HEURISTIC") -> dict[str, str]:
    """TF32 off by default: full fp32 keeps GPU output within rounding of the CPU's (bench-gpu measures both).
    Heuristic algorithm choice is deterministic across processes; exhaustive search is timed, so it is not."""
    return {"device_id": str(stream.device_id), "user_compute_stream": str(stream.ptr),
            "use_tf32": "1" if tf32 else "0", "cudnn_conv_algo_search": algo_search}


@dataclass
class _Slot:
    device: cp.ndarray  # (batch, length, channels) int16
    host: np.ndarray  # the same, pinned
    copied: cp.cuda.Event


class PendingBatch:
    """A batch on its way to pinned host memory; `samples()` waits for the copy."""

    def __init__(self, slot: _Slot, count: int) -> None:
        self.slot, self.count = slot, count

    def samples(self) -> np.ndarray:
        self.slot.copied.synchronize()
        return self.slot.host[: self.count]


class CudaSignalPipeline:
    """Batches of one model and one channel list, generated at a fixed batch size on one GPU."""

    def __init__(self, session: ort.InferenceSession, stream: cp.cuda.Stream, manifest: Any,
                 params: dict[str, Any], batch: int, synchronize: bool = False) -> None:
        self.session, self.stream, self.manifest, self.batch = session, stream, manifest, batch
        output: SignalOutput = manifest.output
        names = output.channel_names(params)
        self.copy_stream = cp.cuda.Stream(non_blocking=True)
        self.philox = cp.RawKernel(PHILOX_UNIFORM, "philox_uniform")
        self.to_int16 = cp.RawKernel(signal_kernel_source(output, names), SIGNAL_KERNEL)
        with stream:
            self.noise = {spec.name: cp.empty((batch, *spec.shape), dtype=cp.float32) for spec in manifest.noise_inputs}
            self.raw = cp.empty((batch, len(output.channels), output.length), dtype=cp.float32)
            shape = (batch, output.length, len(names))
            self.slots = [_Slot(cp.empty(shape, dtype=cp.int16), _pinned(shape), cp.cuda.Event(block=False,
                                                                                             disable_timing=True))
                          for _ in range(SLOTS)]
        for slot in self.slots:
            slot.copied.record(self.copy_stream)
        self.generated = cp.cuda.Event(block=False, disable_timing=True)
        self.binding = session.io_binding()
        for name, buffer in self.noise.items():
            self._bind(name, buffer, output=False)
        self._bind(output.tensor, self.raw, output=True)
        for spec in manifest.inputs:
            if isinstance(spec, ParameterInput):
                self.binding.bind_cpu_input(spec.name, np.asarray([params[spec.parameter]], dtype=spec.dtype))
        self.run_options = ort.RunOptions()
        if not synchronize:  # every later step is ordered on the same stream; the copy waits on an event
            self.run_options.add_run_config_entry("disable_synchronize_execution_providers", "1")
        self._next = 0

    def _bind(self, name: str, buffer: cp.ndarray, output: bool) -> None:
        bind = self.binding.bind_output if output else self.binding.bind_input
        bind(name, "cuda", buffer.device.id, np.float32, list(buffer.shape), buffer.data.ptr)

    def submit(self, seed: int, start: int, count: int) -> PendingBatch:
        """Queue noise -> model -> int16 -> pinned copy for samples start .. start+count-1 (count <= batch)."""
        if not 0 < count <= self.batch:
            raise ValueError(f"count {count} is outside 1..{self.batch}")
        slot = self.slots[self._next]
        self._next = (self._next + 1) % SLOTS
        with self.stream:
            position = 0
            for spec in self.manifest.noise_inputs:
                per_sample = int(np.prod(spec.shape))
                blocks = ((position + per_sample - 1) >> 3) - (position >> 3) + 1
                grid = (blocks * count + THREADS - 1) // THREADS
                self.philox((grid,), (THREADS,), (
                    self.noise[spec.name], np.uint64(seed), np.uint64(start), np.int32(count), np.int64(per_sample),
                    np.int64(position), np.float32(spec.high - spec.low), np.float32(spec.low)))
                position += per_sample
        self.session.run_with_iobinding(self.binding, self.run_options)
        with self.stream:
            self.stream.wait_event(slot.copied)  # the slot's previous copy has left the device buffer
            steps = count * self.manifest.output.length
            self.to_int16(((steps + THREADS - 1) // THREADS,), (THREADS,), (self.raw, slot.device, np.int32(count)))
            self.generated.record(self.stream)
        self.copy_stream.wait_event(self.generated)
        slot.device[:count].get(stream=self.copy_stream, out=slot.host[:count], blocking=False)
        slot.copied.record(self.copy_stream)
        return PendingBatch(slot, count)

    def run(self, seed: int, plan: Iterable[tuple[int, int]]) -> Iterator[tuple[np.ndarray, int]]:
        """(samples, start) per batch of the plan, in order; each array is valid until the one after next."""
        pending: list[tuple[PendingBatch, int]] = []
        for start, count in plan:
            pending.append((self.submit(seed, start, count), start))
            if len(pending) > 1:
                batch, first = pending.pop(0)
                yield batch.samples(), first
        for batch, first in pending:
            yield batch.samples(), first


def _pinned(shape: tuple[int, ...]) -> np.ndarray:
    memory = cp.cuda.alloc_pinned_memory(int(np.prod(shape)) * 2)
    return np.frombuffer(memory, dtype=np.int16, count=int(np.prod(shape))).reshape(shape)
