"""Measured figures of an installed SinGAN-Seg model against its training image.

python -m model_store.recipes.singan_seg.checks model_store/models/respiratory/chest-xray/singan-seg-chest-xray/1

Samples are drawn from the ONNX graph with onnxruntime and turned into pixels the
way the service does (value range -> 0..255, mask thresholded at 128). The
training image is found in training_images/ by the sha256 its training.json
recorded, and resized to the model's size the way training resized it. The
tests hold every SinGAN-Seg model in the store to these figures.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from . import TRAINING_IMAGES

RECIPE = "model_store.recipes.singan_seg"
STORE = Path(__file__).resolve().parents[2] / "models"


def model_folders(store: Path = STORE) -> list[Path]:
    """Every version folder in the store whose card says this recipe made it."""
    found = []
    for manifest in sorted(store.glob("*/*/*/*/manifest.json")):
        card = json.loads(manifest.read_text())
        if card.get("provenance", {}).get("recipe") == RECIPE:
            found.append(manifest.parent)
    return found


@functools.cache
def _by_sha256() -> dict[str, Path]:
    return {hashlib.sha256(p.read_bytes()).hexdigest(): p for p in TRAINING_IMAGES.glob("*/*") if p.suffix != ".md"}


def training_files(folder: Path) -> tuple[Path, Path | None]:
    """The training image (and mask file, if it had one) in training_images/, by sha256."""
    training = json.loads((folder / "training.json").read_text())
    image = _by_sha256()[training["image_sha256"]]
    mask = _by_sha256()[training["mask_sha256"]] if "mask_sha256" in training else None
    return image, mask


def to_pixels(raw: np.ndarray) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> (N, H, W, C) uint8, last channel (the mask) in {0, 255}: as the service does."""
    out = np.clip(np.rint((raw + 1.0) * 127.5), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    out[..., -1] = np.where(out[..., -1] >= 128, 255, 0)
    return out


def training_pixels(folder: Path) -> np.ndarray:
    """The training image + mask at the model's output size, (H, W, C) uint8."""
    import torch  # training-side dependency, only needed here

    from .train import build_reals, load_image

    image, mask = training_files(folder)
    height, width = json.loads((folder / "export.json").read_text())["image_size"]
    (real,) = build_reals(load_image(image, mask), [(height, width)])
    with torch.no_grad():
        return to_pixels(real.numpy())[0]


def sample(folder: Path, count: int, seed: int, start_scale: int = 0) -> np.ndarray:
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    feed: dict[str, np.ndarray] = {}
    for spec in session.get_inputs():
        if spec.name == "start_scale":
            feed[spec.name] = np.array([start_scale], dtype=np.int64)
        else:
            feed[spec.name] = rng.standard_normal((count, *spec.shape[1:]), dtype=np.float32)
    return to_pixels(session.run(["image"], feed)[0])


def figures(folder: Path, count: int = 16, seed: int = 0) -> dict[str, Any]:
    samples, reference = sample(folder, count, seed), training_pixels(folder)
    colour, ref_colour = samples[..., :-1].astype(float), reference[..., :-1].astype(float)
    masked = (samples[..., -1] == 255).mean(axis=(1, 2))
    train_masked = float((reference[..., -1] == 255).mean())
    flat = colour.reshape(count, -1)
    pairwise = [np.abs(flat[i] - flat[j]).mean() for i in range(count) for j in range(i + 1, count)]
    to_training = np.abs(colour - ref_colour).mean(axis=(1, 2, 3))
    return {
        "samples": count,
        "seed": seed,
        "masks_binary": bool(set(np.unique(samples[..., -1])) <= {0, 255}),
        "mask_fraction_training": round(train_masked, 4),
        "mask_fraction_samples_mean": round(float(masked.mean()), 4),
        "mask_fraction_ratio_min": round(float(masked.min() / train_masked), 3),
        "mask_fraction_ratio_max": round(float(masked.max() / train_masked), 3),
        "distinct_masks": len({s[..., -1].tobytes() for s in samples}),
        "min_distance_between_samples": round(float(min(pairwise)), 2),
        "min_distance_to_training": round(float(to_training.min()), 2),
        "mean_samples": [round(float(v), 1) for v in colour.reshape(-1, colour.shape[-1]).mean(axis=0)],
        "mean_training": [round(float(v), 1) for v in ref_colour.reshape(-1, ref_colour.shape[-1]).mean(axis=0)],
        "std_samples": [round(float(v), 1) for v in colour.reshape(-1, colour.shape[-1]).std(axis=0)],
        "std_training": [round(float(v), 1) for v in ref_colour.reshape(-1, ref_colour.shape[-1]).std(axis=0)],
    }


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", nargs="*", type=Path, help="model version folders (default: every SinGAN-Seg model)")
    p.add_argument("--count", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    for folder in a.folders or model_folders():
        print(folder, json.dumps(figures(folder, a.count, a.seed)))


if __name__ == "__main__":
    main()
