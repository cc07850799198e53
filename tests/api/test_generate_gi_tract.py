"""The second body system, served by the same code: SinGAN-Seg polyp image + mask pairs over HTTP."""

from __future__ import annotations

import base64
import io
import json
import zipfile

import httpx
import numpy as np
import pytest
from PIL import Image

from model_store.recipes.singan_seg import GI_TRACT_IMAGE as TRAINING_IMAGE
from tests.conftest import submit, wait_finished

GI = "/generate/digestive/gi-tract"
COUNT = 12


def _pairs(archive: zipfile.ZipFile) -> tuple[np.ndarray, np.ndarray]:
    names = archive.namelist()
    images = sorted(n for n in names if n.startswith("image_"))
    masks = sorted(n for n in names if n.startswith("mask_"))
    assert [n.replace("image_", "") for n in images] == [n.replace("mask_", "") for n in masks]
    decode = lambda n: np.array(Image.open(io.BytesIO(archive.read(n))))  # noqa: E731
    return np.stack([decode(n) for n in images]), np.stack([decode(n) for n in masks])


@pytest.fixture(scope="module")
def card(client: httpx.Client) -> dict:
    (card,) = client.get("/models/digestive/gi-tract").json()
    return card


@pytest.fixture(scope="module")
def pairs(client: httpx.Client) -> tuple[np.ndarray, np.ndarray, dict]:
    created = submit(client, {"num_samples": COUNT, "seed": 3, "format": "png"}, path=GI)
    assert wait_finished(client, created["job_id"])["status"] == "finished"
    archive = zipfile.ZipFile(io.BytesIO(client.get(f"/jobs/{created['job_id']}/result").content))
    images, masks = _pairs(archive)
    return images, masks, json.loads(archive.read("manifest.json"))


@pytest.fixture(scope="module")
def training() -> tuple[np.ndarray, np.ndarray]:
    return np.array(Image.open(TRAINING_IMAGE).convert("RGBA"))[..., :3], np.array(Image.open(TRAINING_IMAGE))[..., 3]


def _resized(training_rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    return np.array(Image.fromarray(training_rgb).resize((width, height), Image.BICUBIC)).astype(float)


def test_catalog_shows_it_under_digestive(client: httpx.Client, card: dict) -> None:
    digestive = next(s for s in client.get("/models").json()["body_systems"] if s["name"] == "digestive")
    assert [sub["name"] for sub in digestive["subcategories"]] == ["gi-tract"]
    assert card["id"] == "singan-seg-polyp" and card["output"]["kind"] == "image"
    assert card["formats"] == ["png", "npy", "json"] and "start_scale" in card["parameters"]
    assert card["provenance"]["training"]["seed"] == 0 and card["provenance"]["training"]["wall_clock_seconds"] > 0


def test_pairs_are_rgb_images_with_strictly_binary_masks(pairs: tuple, card: dict) -> None:
    images, masks, manifest = pairs
    height, width = card["output"]["height"], card["output"]["width"]
    assert images.shape == (COUNT, height, width, 3) and masks.shape == (COUNT, height, width)
    assert set(np.unique(masks)) <= {0, 255}
    area = (masks == 255).mean(axis=(1, 2))
    assert np.all((area > 0.02) & (area < 0.7)), area  # a polyp, not empty, not the whole frame
    assert manifest["output"]["mask_channel"] == "mask" and len(manifest["files"]) == 2 * COUNT


def test_samples_differ_from_each_other(pairs: tuple) -> None:
    images, masks, _ = pairs
    flat = images.reshape(COUNT, -1).astype(float)
    distances = [np.abs(flat[i] - flat[j]).mean() for i in range(COUNT) for j in range(i + 1, COUNT)]
    assert min(distances) > 3, min(distances)
    assert len({m.tobytes() for m in masks}) == COUNT


def test_samples_are_not_copies_of_the_training_image_but_share_its_colours(pairs: tuple, training: tuple, card: dict) -> None:
    images, _, _ = pairs
    reference = _resized(training[0], card["output"]["height"], card["output"]["width"])
    differences = np.abs(images.astype(float) - reference).mean(axis=(1, 2, 3))
    assert differences.min() > 5, differences  # no sample reproduces the training frame
    sample_means, reference_means = images.reshape(-1, 3).mean(axis=0), reference.reshape(-1, 3).mean(axis=0)
    assert np.all(np.abs(sample_means - reference_means) < 20), (sample_means, reference_means)
    sample_std, reference_std = images.reshape(-1, 3).std(axis=0), reference.reshape(-1, 3).std(axis=0)
    assert np.all(np.abs(sample_std - reference_std) < 0.35 * reference_std), (sample_std, reference_std)


def test_higher_start_scale_is_closer_to_the_training_image(client: httpx.Client, training: tuple, card: dict) -> None:
    top = card["parameters"]["start_scale"]["maximum"]
    reference = _resized(training[0], card["output"]["height"], card["output"]["width"])
    distance = {}
    for start_scale in (0, top):
        created = submit(client, {"num_samples": 6, "seed": 4, "format": "npy", "start_scale": start_scale}, path=GI)
        assert wait_finished(client, created["job_id"])["status"] == "finished"
        archive = zipfile.ZipFile(io.BytesIO(client.get(f"/jobs/{created['job_id']}/result").content))
        samples = np.load(io.BytesIO(archive.read("images.npy")))
        assert samples.shape[-1] == 4 and samples.dtype == np.uint8
        distance[start_scale] = np.abs(samples[..., :3].astype(float) - reference).mean()
    assert distance[top] < distance[0], distance


def test_stream_carries_base64_pngs_equal_to_the_archive(client: httpx.Client) -> None:
    created = submit(client, {"num_samples": 3, "seed": 9, "format": "png"}, path=GI)
    lines = [json.loads(line) for line in client.get(f"/jobs/{created['job_id']}/stream").text.splitlines()]
    assert wait_finished(client, created["job_id"])["status"] == "finished"
    archive = zipfile.ZipFile(io.BytesIO(client.get(f"/jobs/{created['job_id']}/result").content))
    for line in lines:
        assert base64.b64decode(line["image_png"]) == archive.read(f"image_{line['index']:05d}.png")
        assert base64.b64decode(line["mask_png"]) == archive.read(f"mask_{line['index']:05d}.png")


@pytest.mark.parametrize(
    ("body", "field"),
    [({"start_scale": 99}, "start_scale"), ({"start_scale": -1}, "start_scale"), ({"start_scale": "0"}, "start_scale"),
     ({"format": "wfdb"}, "format"), ({"leads": 12}, "leads")],
)
def test_model_parameters_are_validated_from_the_manifest(client: httpx.Client, body: dict, field: str) -> None:
    response = client.post(GI, json={"num_samples": 1, **body})
    assert response.status_code == 422, response.text
    assert field in response.json()["message"]
