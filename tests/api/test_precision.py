"""The fp16 variant: chosen per request, recorded in the archive's manifest, close to fp32 but its own model."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np

from model_store.store import sha256_file
from tests.api.test_generate_ecg import download, read_samples
from tests.conftest import ECG


def test_fp16_is_chosen_per_request_recorded_and_close_to_fp32(client: httpx.Client, ecg_model_dir: Path,
                                                                tmp_path: Path) -> None:
    _, fp32, _ = download(client, {"num_samples": 4, "seed": 5, "format": "npy"})
    _, fp16, _ = download(client, {"num_samples": 4, "seed": 5, "format": "npy", "precision": "fp16"})

    manifest32, manifest16 = json.loads(fp32.read("manifest.json")), json.loads(fp16.read("manifest.json"))
    assert manifest32["model"]["precision"] == "fp32" and manifest32["arithmetic"] == "fp32"
    assert manifest16["model"]["precision"] == "fp16" and manifest16["arithmetic"] == "fp16"
    assert manifest16["request"]["precision"] == "fp16"
    assert manifest16["model"]["sha256"] == sha256_file(ecg_model_dir / "model.fp16.onnx")
    assert manifest32["model"]["sha256"] == sha256_file(ecg_model_dir / "model.onnx")

    difference = np.abs(read_samples(fp32, "npy", tmp_path).astype(int) - read_samples(fp16, "npy", tmp_path))
    assert 0 < difference.max() <= 500  # uV: the same ECGs drawn from the same noise, at half precision
    assert difference.mean() < 5


def test_a_precision_the_model_lacks_is_422_naming_those_it_has(client: httpx.Client) -> None:
    response = client.post(ECG, json={"num_samples": 1, "precision": "fp64"})
    assert response.status_code == 422
    assert "precision" in response.text and "fp16" in response.text and "fp32" in response.text


def test_models_without_variants_take_no_precision_field(client: httpx.Client) -> None:
    response = client.post("/generate/digestive/gi-tract", json={"num_samples": 1, "precision": "fp16"})
    assert response.status_code == 422
    assert "precision" in response.text


def test_the_model_card_lists_the_precisions(client: httpx.Client) -> None:
    card = next(c for c in client.get("/models/cardiovascular/ecg").json() if c["id"] == "pulse2pulse-ecg")
    assert set(card["precisions"]) == {"fp32", "fp16"}
    assert "uV" in card["precisions"]["fp16"]
