"""Batches flow noise -> inference -> encoding, each stage in its own thread, one batch in flight per stage.

onnxruntime, numpy's generators and file writes release the GIL, so the next batch's noise is drawn
and the previous batch is encoded while the current one is inferred.
"""

from __future__ import annotations

from collections.abc import Callable
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
            consume: Consumer, before_batch: Callable[[int], None]) -> None:
    """Run every batch of `plan` through the model and hand the samples to `consume(samples, start)` in order."""
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
