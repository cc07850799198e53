"""One sample as one NDJSON line: the `json` format and the /stream endpoint write the same bytes."""

from __future__ import annotations

import base64
import io

import numpy as np
import orjson
from PIL import Image

from model_store.manifest import ImageOutput, SignalOutput


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def image_pair(sample: np.ndarray, spec: ImageOutput) -> tuple[bytes, bytes | None]:
    """PNG of the colour channels and, when the model has one, of the mask channel."""
    colour = sample[..., [spec.channels.index(c) for c in spec.color_channels]]
    colour = colour[..., 0] if colour.shape[-1] == 1 else colour  # one grey channel: an 8-bit L PNG
    mask = sample[..., spec.channels.index(spec.mask_channel)] if spec.mask_channel else None
    return png_bytes(np.ascontiguousarray(colour)), (png_bytes(np.ascontiguousarray(mask)) if mask is not None else None)


def line(spec: SignalOutput | ImageOutput, channel_names: list[str], seed: int, index: int, sample: np.ndarray,
         measurements: dict | None = None) -> bytes:
    if isinstance(spec, SignalOutput):
        columns = np.ascontiguousarray(sample.T)
        record = {
            "index": index,
            "seed": seed,
            "sampling_rate": spec.sampling_rate,
            "unit": spec.unit,
            spec.record_key: dict(zip(channel_names, columns)),
        }
    else:
        image, mask = image_pair(sample, spec)
        record = {
            "index": index,
            "seed": seed,
            "width": spec.width,
            "height": spec.height,
            "image_png": base64.b64encode(image).decode(),
        }
        if mask is not None:
            record["mask_png"] = base64.b64encode(mask).decode()
    if measurements is not None:  # an annotated job's (workers.ecg_measurements)
        record["measurements"] = measurements
    return orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE)
