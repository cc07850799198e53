"""A picture of a model's samples (for model cards and the README), made by the worker's own pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first
import numpy as np  # noqa: E402

from deepsynthbody.core.settings import Settings  # noqa: E402
from model_store.manifest import ImageOutput, SignalOutput  # noqa: E402
from model_store.store import ModelEntry  # noqa: E402
from workers import runtime  # noqa: E402


def _image_grid(samples: np.ndarray, spec: ImageOutput, title: str) -> plt.Figure:
    colour = [spec.channels.index(c) for c in spec.color_channels]
    rows = 2 if spec.mask_channel else 1
    aspect = spec.height / spec.width
    fig, axes = plt.subplots(rows, len(samples), figsize=(2 * len(samples), 2 * rows * aspect + 0.6), squeeze=False)
    for i, sample in enumerate(samples):
        if len(colour) == 1:  # a grey image: grey levels, not a colour map
            axes[0][i].imshow(sample[..., colour[0]], cmap="gray", vmin=0, vmax=255)
        else:
            axes[0][i].imshow(sample[..., colour])
        axes[0][i].set_title(f"#{i}", fontsize=8)
        if spec.mask_channel:
            axes[1][i].imshow(sample[..., spec.channels.index(spec.mask_channel)], cmap="gray", vmin=0, vmax=255)
    for ax in axes.flat:
        ax.set_axis_off()
    fig.suptitle(title, fontsize=10)
    return fig


def _signal_grid(samples: np.ndarray, spec: SignalOutput, names: list[str], title: str) -> plt.Figure:
    channel = names.index("II") if "II" in names else 0
    seconds = np.arange(spec.length) / spec.sampling_rate
    fig, axes = plt.subplots(len(samples), 1, figsize=(10, 1.4 * len(samples)), sharex=True, squeeze=False)
    for ax, sample in zip(axes[:, 0], samples):
        ax.plot(seconds, sample[:, channel], linewidth=0.7)
        ax.set_ylabel(spec.unit, fontsize=7)
    axes[-1, 0].set_xlabel(f"seconds (channel {names[channel]})")
    fig.suptitle(title, fontsize=10)
    return fig


def render(entry: ModelEntry, settings: Settings, out: Path, count: int, seed: int, params: dict[str, Any]) -> Path:
    manifest = entry.manifest
    params = {name: p.default for name, p in manifest.parameters.items()} | params
    samples = runtime.load(entry, settings).samples(seed, 0, count, params)
    title = f"{manifest.name} {manifest.id}:{manifest.version}, seed {seed}" + "".join(f", {k}={v}" for k, v in params.items())
    if isinstance(manifest.output, ImageOutput):
        fig = _image_grid(samples, manifest.output, title)
    else:
        fig = _signal_grid(samples, manifest.output, manifest.output.channel_names(params), title)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out
