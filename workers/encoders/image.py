"""Image formats: a PNG per sample, and its mask as a separate strictly binary PNG."""

from __future__ import annotations

import numpy as np

from model_store.manifest import ImageOutput
from workers.encoders.base import EncodeContext
from workers.encoders.records import image_pair


def write_png(ctx: EncodeContext, samples: np.ndarray, start: int) -> None:
    assert isinstance(ctx.output, ImageOutput)
    for offset, sample in enumerate(samples):
        image, mask = image_pair(sample, ctx.output)
        (ctx.directory / f"{ctx.stem(start + offset)}.png").write_bytes(image)
        if mask is not None:
            (ctx.directory / f"{ctx.stem(start + offset, 'mask')}.png").write_bytes(mask)
