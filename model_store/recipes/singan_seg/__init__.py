"""SinGAN-Seg: a generator of image + mask pairs learnt from one real image and its mask."""

from pathlib import Path

TRAINING_IMAGES = Path(__file__).parent / "training_images"  # each with its SOURCE.md (origin, licence, citation)
GI_TRACT_IMAGE = TRAINING_IMAGES / "gi-tract" / "polyp_with_4_channels.png"
