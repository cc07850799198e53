"""Batches flow noise -> inference -> encoding, and the encoder gets them in order.

On the CPU, `lanes` threads each make whole batches (noise, a single-threaded onnxruntime run, int16)
side by side, and one more thread encodes: independent runs keep the cores busy where one run split
over the cores would wait for its slowest thread whenever the encoder takes a core (measured on 2 cores,
README "Performance"). onnxruntime, numpy's generators and file writes release the GIL.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from workers import measuring_processes, noise, postprocess
from workers.runtime import ModelRuntime

Consumer = Callable[[np.ndarray, int], None]
Measurer = Callable[[np.ndarray, int], None]  # measures samples start.. (an annotated job), before they are consumed


def batches(total: int, size: int, first: int = 0) -> list[tuple[int, int]]:
    """(start, count) of each batch of samples first .. first+total-1."""
    return [(start, min(size, first + total - start)) for start in range(first, first + total, size)]


def produce(model: ModelRuntime, seed: int, params: dict[str, Any], plan: list[tuple[int, int]],
            consume: Consumer, before_batch: Callable[[int], None], batch_size: int,
            measure: Measurer | None = None, encoding_processes: int = 0) -> None:
    """Run every batch of `plan` through the model and hand the samples to `consume(samples, start)` in order.
    `measure(samples, start)`, when given, runs on each batch first, in the encoder's thread: it hands the batch to
    the worker's measuring processes (`workers.measuring_processes`), and the lanes go on making the next batches.
    `encoding_processes`: how many of those processes `consume` encodes in (`workers.encoding_processes`). They
    are forked once, as many as either needs, before the lanes start.

    On the GPU path every batch runs at `batch_size` (short ones padded), so a sample's arithmetic does not
    depend on the size of the request it is part of."""
    if measure is not None:
        consume = _measured(measure, consume)
    processes = max(model.measuring_processes if measure is not None else 0, encoding_processes)
    if processes:
        shape, dtype = postprocess.sample_shape(model.entry.manifest.output, params)
        measuring_processes.prepare(processes, batch_size * math.prod(shape) * dtype.itemsize)
    gpu = model.gpu_pipeline(params, batch_size)
    if gpu is not None:
        _produce_on_gpu(gpu, seed, plan, consume, before_batch)
        return
    inputs = model.entry.manifest.noise_inputs
    lanes = model.lanes

    def make(start: int, count: int) -> np.ndarray:
        return model.postprocess(model.run(noise.draw(inputs, seed, start, count), params), params)

    with ThreadPoolExecutor(lanes, "infer") as making, ThreadPoolExecutor(1, "encode") as encoding:
        pending: deque[tuple[Future[np.ndarray], int]] = deque()
        writing: Future[None] | None = None

        def hand_on() -> None:
            nonlocal writing
            made, first = pending.popleft()
            samples = made.result()
            if writing is not None:
                writing.result()  # re-raises an encoder's error here
            writing = encoding.submit(consume, samples, first)

        for start, count in plan:
            before_batch(start)
            pending.append((making.submit(make, start, count), start))
            if len(pending) > lanes:  # every lane has a batch; the oldest goes to the encoder in order
                hand_on()
        while pending:
            hand_on()
        if writing is not None:
            writing.result()


def _measured(measure: Measurer, consume: Consumer) -> Consumer:
    def measure_then_consume(samples: np.ndarray, start: int) -> None:
        measure(samples, start)
        consume(samples, start)

    return measure_then_consume


def _produce_on_gpu(gpu: Any, seed: int, plan: list[tuple[int, int]], consume: Consumer,
                    before_batch: Callable[[int], None]) -> None:
    """The GPU generates batch k+1 while batch k is copied to pinned memory and batch k-1 is encoded."""

    def checked() -> Iterator[tuple[int, int]]:
        for start, count in plan:
            before_batch(start)
            yield start, count

    with ThreadPoolExecutor(1, "encode") as encoding:
        writing: Future[None] | None = None
        for samples, start in gpu.run(seed, checked()):
            if writing is not None:
                writing.result()
            writing = encoding.submit(consume, samples, start)
        if writing is not None:
            writing.result()
