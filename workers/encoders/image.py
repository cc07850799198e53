"""Image formats: a PNG per sample, and its mask as a separate strictly binary PNG."""

from __future__ import annotations

import numpy as np

from model_store.manifest import ImageOutput
from workers.encoders.base import EncodeContext
from workers.encoders.records import image_pair


class PngWriter:
    def __init__(self, ctx: EncodeContext) -> None:
        assert isinstance(ctx.output, ImageOutput)
        self.ctx, self.output = ctx, ctx.output

    def write(self, samples: np.ndarray, start: int) -> None:
        for offset, sample in enumerate(samples):
            image, mask = image_pair(sample, self.output)
            self.ctx.members.add(f"{self.ctx.stem(start + offset)}.png", image)
            if mask is not None:
                self.ctx.members.add(f"{self.ctx.stem(start + offset, 'mask')}.png", mask)
