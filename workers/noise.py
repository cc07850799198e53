"""Counter-based noise: sample i of a job with seed s always gets the same noise.

Each sample has its own Philox stream keyed by (seed, index), so its noise does not
depend on the batch it lands in, the worker that draws it, or the output format.
"""

from __future__ import annotations

import numpy as np

from model_store.manifest import NoiseInput

SEED_BITS = 64


def sample_generator(seed: int, index: int) -> np.random.Generator:
    return np.random.Generator(np.random.Philox(key=seed | (index << SEED_BITS)))


def draw(inputs: list[NoiseInput], seed: int, start: int, count: int) -> dict[str, np.ndarray]:
    """Noise for samples start .. start+count-1, each input drawn in manifest order per sample."""
    batch = {spec.name: np.empty((count, *spec.shape), dtype=np.float32) for spec in inputs}
    for offset in range(count):
        rng = sample_generator(seed, start + offset)
        for spec in inputs:
            out = batch[spec.name][offset]
            if spec.distribution == "uniform":
                rng.random(out=out, dtype=np.float32)
                out *= spec.high - spec.low
                out += spec.low
            else:
                rng.standard_normal(out=out, dtype=np.float32)
    return batch
