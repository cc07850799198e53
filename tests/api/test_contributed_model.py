"""A model added with `models add` is served by the same code, at once, with its versions selectable."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from model_store.store import ModelStore
from tests.conftest import submit, wait_finished, wait_for
from tests.helpers.tiny_model import make_model

PATH = "/generate/integumentary/skin-patch"


def test_added_versions_are_listed_selectable_and_served(client: httpx.Client, extra_models: Path, tmp_path: Path) -> None:
    store = ModelStore([extra_models])
    candidate = make_model(tmp_path / "candidate")
    assert [store.install(candidate).manifest.version for _ in range(2)] == [1, 2]

    wait_for(lambda: client.get("/models/integumentary/skin-patch").status_code == 200, 5, "the API to see the new model")
    (card,) = client.get("/models/integumentary/skin-patch").json()
    assert card["id"] == "tiny-image" and card["version"] == 2 and card["versions"] == [1, 2]

    latest = submit(client, {"num_samples": 3, "seed": 1, "format": "png"}, path=PATH)
    pinned = submit(client, {"num_samples": 3, "seed": 1, "format": "png", "version": 1}, path=PATH)
    assert latest["model"] == {"id": "tiny-image", "version": 2} and pinned["model"]["version"] == 1
    for created in (latest, pinned):
        assert wait_finished(client, created["job_id"])["status"] == "finished"
    archives = [zipfile.ZipFile(io.BytesIO(client.get(f"/jobs/{c['job_id']}/result").content)) for c in (latest, pinned)]
    names = sorted(archives[0].namelist())
    assert names == ["image_00000.png", "image_00001.png", "image_00002.png", "manifest.json",
                     "mask_00000.png", "mask_00001.png", "mask_00002.png"]
    mask = np.array(Image.open(io.BytesIO(archives[0].read("mask_00000.png"))))
    assert mask.shape == (8, 8) and set(np.unique(mask)) <= {0, 255}
    assert all(archives[0].read(n) == archives[1].read(n) for n in names if n != "manifest.json")  # same weights
    assert client.post(PATH, json={"num_samples": 1, "version": 3}).json()["versions"] == [1, 2]
