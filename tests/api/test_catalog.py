"""The model catalog: all eleven body systems, model cards driven by manifests."""

from __future__ import annotations

import httpx

from model_store.catalog import BODY_SYSTEMS


def test_catalog_lists_all_body_systems_even_empty_ones(client: httpx.Client) -> None:
    systems = client.get("/models").json()["body_systems"]
    assert [s["name"] for s in systems] == list(BODY_SYSTEMS)
    by_name = {s["name"]: s for s in systems}
    assert by_name["skeletal"]["subcategories"] == []
    ecg = next(sub for sub in by_name["cardiovascular"]["subcategories"] if sub["name"] == "ecg")
    assert [m["id"] for m in ecg["models"]] == ["pulse2pulse-ecg"]


def test_five_body_systems_have_a_model_each(client: httpx.Client) -> None:
    """The models the repository ships: one per body system in five of them."""
    systems = client.get("/models").json()["body_systems"]
    served = {s["name"]: {f"{sub['name']}/{m['id']}" for sub in s["subcategories"] for m in sub["models"]}
              for s in systems}
    shipped = {"cardiovascular": "ecg/pulse2pulse-ecg", "digestive": "gi-tract/singan-seg-polyp",
               "respiratory": "chest-xray/singan-seg-chest-xray", "integumentary": "skin-lesion/singan-seg-skin-lesion",
               "nervous": "retina/singan-seg-retina"}
    for system, model in shipped.items():
        assert model in served[system], (system, served[system])  # the test session adds a broken model or two


def test_model_card_describes_the_ecg_model(client: httpx.Client) -> None:
    response = client.get("/models/cardiovascular/ecg")
    assert response.status_code == 200
    (card,) = response.json()
    assert card["version"] == 2 and card["versions"] == [1, 2]
    assert card["output"]["channels"] == ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"]
    assert card["output"]["sampling_rate"] == 500.0 and card["output"]["length"] == 5000
    assert card["output"]["unit"] == "uV" and card["output"]["dtype"] == "int16"
    assert card["parameters"]["leads"]["enum"] == [8, 12]
    assert card["formats"] == ["wfdb", "csv", "asc", "npy", "json", "edf", "dicom", "pdf", "png"]
    assert len(card["sha256"]) == 64 and card["license"] and card["citations"]
    assert card["generate"] == "/generate/cardiovascular/ecg"


def test_unknown_subcategory_card_is_404_listing_what_exists(client: httpx.Client) -> None:
    response = client.get("/models/digestive/liver")
    assert response.status_code == 404
    assert "cardiovascular" in response.json()["available"]
