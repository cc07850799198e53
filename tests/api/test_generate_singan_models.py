"""Every SinGAN-Seg model in the store, served by the same code over HTTP: image + mask pairs
that hold to their training image. Parametrised over the store, no branch on a model's name."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from model_store.recipes.singan_seg import checks
from tests.conftest import submit, wait_finished

COUNT = 8
MODELS = checks.model_folders()
# Version folders -> the latest of each subcategory, the one a request without "version" gets.
LATEST = {f.parts[-4:-2]: f for f in MODELS}


@pytest.fixture(scope="module", params=sorted(LATEST.values()), ids=lambda f: "/".join(f.parts[-4:-1]))
def model(request: pytest.FixtureRequest) -> Path:
    return request.param


@pytest.fixture(scope="module")
def served(client: httpx.Client, model: Path) -> tuple[dict, np.ndarray, np.ndarray]:
    category, subcategory = model.parts[-4:-2]
    created = submit(client, {"num_samples": COUNT, "seed": 11, "format": "png"}, path=f"/generate/{category}/{subcategory}")
    assert wait_finished(client, created["job_id"])["status"] == "finished"
    archive = zipfile.ZipFile(io.BytesIO(client.get(f"/jobs/{created['job_id']}/result").content))
    names = archive.namelist()
    images = [Image.open(io.BytesIO(archive.read(n))) for n in sorted(n for n in names if n.startswith("image_"))]
    masks = [Image.open(io.BytesIO(archive.read(n))) for n in sorted(n for n in names if n.startswith("mask_"))]
    card = json.loads((model / "manifest.json").read_text())
    assert len(images) == len(masks) == COUNT
    assert {i.mode for i in images} == {"L" if card["output"]["color_channels"] == ["grey"] else "RGB"}
    return card, np.stack([np.array(i) for i in images]), np.stack([np.array(m) for m in masks])


def test_catalog_lists_the_model_under_its_body_system(client: httpx.Client, model: Path) -> None:
    category, subcategory = model.parts[-4:-2]
    system = next(s for s in client.get("/models").json()["body_systems"] if s["name"] == category)
    sub = next(s for s in system["subcategories"] if s["name"] == subcategory)
    assert model.parts[-2] in [m["id"] for m in sub["models"]]


def test_served_pairs_hold_to_the_training_image(served: tuple, model: Path) -> None:
    card, images, masks = served
    height, width = card["output"]["height"], card["output"]["width"]
    assert images.shape[:3] == masks.shape == (COUNT, height, width)
    assert set(np.unique(masks)) <= {0, 255}  # strictly binary
    reference = checks.training_pixels(model)
    training_fraction = (reference[..., -1] == 255).mean()
    ratios = (masks == 255).mean(axis=(1, 2)) / training_fraction
    print(model.parts[-4:-1], "masked fraction / training mask's:", np.round(ratios, 3))
    assert np.all((ratios >= 0.5) & (ratios <= 2.0)), ratios
    colour = images.reshape(COUNT, height, width, -1).astype(float)
    flat = colour.reshape(COUNT, -1)
    pairwise = min(np.abs(flat[i] - flat[j]).mean() for i in range(COUNT) for j in range(i + 1, COUNT))
    nearest_training = np.abs(colour - reference[..., :-1]).mean(axis=(1, 2, 3)).min()
    print(model.parts[-4:-1], "min distance between samples", pairwise, "to training", nearest_training)
    assert pairwise > 3 and nearest_training > 3
    assert np.all(np.abs(colour.mean(axis=(0, 1, 2)) - reference[..., :-1].mean(axis=(0, 1))) < 20)
