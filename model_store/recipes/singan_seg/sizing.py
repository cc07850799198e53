"""How much of the mask survives a working size: pick --max-size before training.

python -m model_store.recipes.singan_seg.sizing --image IMG --mask MASK --max-size 64 128 256 512

For each max size, prints the finest scale's size and the fraction of pixels the
mask marks there (the mask channel resized as training resizes it, then
thresholded as the service thresholds samples), next to the fraction at full
size. Thin structures (retinal vessels, a few pixels wide at full size) fall
below the threshold when the image is shrunk too far: their fraction drops
towards 0 while a blob's (lungs, a lesion) stays put.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from .train import build_reals, load_image, mask_fraction, pyramid_sizes


def survival(image: Path, mask: Path | None, max_sizes: Sequence[int]) -> list[dict]:
    full = load_image(image, mask)
    rows = [{"max_size": None, "size": list(full.shape[2:]), "mask_fraction": round(mask_fraction(full), 6)}]
    for max_size in max_sizes:
        (size,) = pyramid_sizes(full.shape[2], full.shape[3], max_size, max_size, 0.75)[-1:]
        (real,) = build_reals(full, [size])
        rows.append({"max_size": max_size, "size": list(size), "mask_fraction": round(mask_fraction(real), 6)})
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image", required=True, type=Path)
    p.add_argument("--mask", type=Path)
    p.add_argument("--max-size", type=int, nargs="+", required=True)
    a = p.parse_args(argv)
    rows = survival(a.image, a.mask, a.max_size)
    full = rows[0]["mask_fraction"]
    for row in rows:
        ratio = row["mask_fraction"] / full if full else float("nan")
        label = "full" if row["max_size"] is None else row["max_size"]
        print(f"max_size {label!s:>5}  size {row['size'][0]}x{row['size'][1]}  "
              f"mask fraction {row['mask_fraction']:.4f}  ({ratio:.2f} x full size)")


if __name__ == "__main__":
    main()
