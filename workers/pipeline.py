"""Batches flow noise -> inference -> encoding, each stage in its own thread, one batch in flight per stage.

onnxruntime, numpy's generators and file writes release the GIL, so the next batch's noise is drawn
and the previous batch is encoded while the current one is inferred.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from workers import noise
from workers.runtime import ModelRuntime

Consumer = Callable[[np.ndarray, int], None]


def batches(total: int, size: int, first: int = 0) -> list[tuple[int, int]]:
    """(start, count) of each batch of samples first .. first+total-1."""
    return [(start, min(size, first + total - start)) for start in range(first, first + total, size)]


def produce(model: ModelRuntime, seed: int, params: dict[str, Any], plan: list[tuple[int, int]],
            consume: Consumer, before_batch: Callable[[int], None], batch_size: int) -> None:
    """Run every batch of `plan` through the model and hand the samples to `consume(samples, start)` in order.

    On the GPU path every batch runs at `batch_size` (short ones padded), so a sample's arithmetic does not
    depend on the size of the request it is part of."""
    gpu = model.gpu_pipeline(params, batch_size)
    if gpu is not None:
        _produce_on_gpu(gpu, seed, plan, consume, before_batch)
        return
    inputs = model.entry.manifest.noise_inputs
    with ThreadPoolExecutor(1, "noise") as drawing, ThreadPoolExecutor(1, "encode") as encoding:
        upcoming = drawing.submit(noise.draw, inputs, seed, *plan[0]) if plan else None
        writing: Future[None] | None = None
        for i, (start, count) in enumerate(plan):
            before_batch(start)
            assert upcoming is not None
            drawn = upcoming.result()
            if i + 1 < len(plan):
                upcoming = drawing.submit(noise.draw, inputs, seed, *plan[i + 1])
            samples = model.postprocess(model.run(drawn, params), params)
            if writing is not None:
                writing.result()  # re-raises an encoder's error here
            writing = encoding.submit(consume, samples, start)
        if writing is not None:
            writing.result()


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
