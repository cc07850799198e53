"""Turn a generator's raw output tensor into the samples users get, in the output's units and dtype."""

from __future__ import annotations

from typing import Any

import numpy as np

from model_store.manifest import ImageOutput, SignalOutput

INT16 = np.iinfo(np.int16)


def signal_samples(raw: np.ndarray, spec: SignalOutput, params: dict[str, Any]) -> np.ndarray:
    """(batch, base channels, time) tanh output -> (batch, time, channels) int16 in spec.unit, rounded."""
    base = raw * np.float32(spec.scale)
    index = {name: i for i, name in enumerate(spec.channels)}
    derived = {d.name: d.weights for d in spec.derived_channels}
    names = spec.channel_names(params)
    out = np.empty((raw.shape[0], raw.shape[2], len(names)), dtype=np.int16)
    for column, name in enumerate(names):
        if name in index:
            values = base[:, index[name]]
        else:
            values = sum(np.float32(w) * base[:, index[src]] for src, w in derived[name].items())
        out[:, :, column] = np.clip(np.rint(values), INT16.min, INT16.max)
    return out


def image_samples(raw: np.ndarray, spec: ImageOutput) -> np.ndarray:
    """(batch, channels, H, W) output in spec.value_range -> (batch, H, W, channels) uint8; mask in {0, 255}."""
    low, high = spec.value_range
    scaled = (raw - low) * (255.0 / (high - low))
    out = np.clip(np.rint(scaled), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    if spec.mask_channel is not None:
        mask = out[..., spec.channels.index(spec.mask_channel)]
        mask[...] = np.where(mask >= 128, 255, 0)
    return np.ascontiguousarray(out)


def to_samples(raw: np.ndarray, spec: SignalOutput | ImageOutput, params: dict[str, Any]) -> np.ndarray:
    if isinstance(spec, SignalOutput):
        return signal_samples(raw, spec, params)
    return image_samples(raw, spec)


def sample_shape(spec: SignalOutput | ImageOutput, params: dict[str, Any]) -> tuple[tuple[int, ...], np.dtype]:
    """Shape of one sample and the dtype, as `to_samples` makes them."""
    if isinstance(spec, SignalOutput):
        return (spec.length, len(spec.channel_names(params))), np.dtype(np.int16)
    return (spec.height, spec.width, len(spec.channels)), np.dtype(np.uint8)
