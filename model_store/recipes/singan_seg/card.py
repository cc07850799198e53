"""The model card (manifest.json) of an exported SinGAN-Seg pyramid: what the service serves it by.

What differs between models (id, body system, what the frames show, the training
image's licence and citations) comes from a card spec, a JSON file kept beside
the training image (training_images/<subcategory>/card.json); everything else
(inputs, output, parameters, provenance) is derived from the export and the run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from model_store.manifest import MANIFEST_FILE, Manifest
from model_store.store import sha256_file

CARD_SPEC = "card.json"

# Cited by every model of this recipe, after the training image's own citations.
RECIPE_CITATIONS = [
    {"text": "Thambawita V, Salehi P, Sheshkal SA, et al. SinGAN-Seg: Synthetic training data generation for "
             "medical image segmentation. PLOS ONE 17(5): e0267976 (2022).", "doi": "10.1371/journal.pone.0267976"},
    {"text": "Shaham TR, Dekel T, Michaeli T. SinGAN: Learning a Generative Model from a Single Natural Image. "
             "ICCV 2019.", "doi": "10.1109/ICCV.2019.00467"},
]
DEEPSYNTHBODY_CITATION = {
    "text": "Thambawita V, Hicks SA, Isaksen J, et al. DeepSynthBody: the beginning of the end for data deficiency "
            "in medicine. ICAPAI 2021."
}
# Output channel names by the number of image channels (the mask is always last).
CHANNELS = {2: ["grey", "mask"], 4: ["R", "G", "B", "mask"]}


def load_spec(path: Path) -> dict[str, Any]:
    spec = json.loads(path.read_text())
    required = {"id", "category", "subcategory", "name", "description", "license", "citations"}
    missing = required - spec.keys()
    if missing:
        raise ValueError(f"{path}: card spec lacks {sorted(missing)}")
    return spec


def citations(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """SinGAN-Seg and SinGAN, the training image's sources, then DeepSynthBody (or the spec's own order)."""
    if spec.get("citation_order") == "recipe_first":
        return RECIPE_CITATIONS + spec["citations"] + [DEEPSYNTHBODY_CITATION]
    return spec["citations"] + RECIPE_CITATIONS + [DEEPSYNTHBODY_CITATION]


def manifest(folder: Path, description: dict[str, Any], spec: dict[str, Any], version: int = 1) -> Manifest:
    num_scales = description["num_scales"]
    height, width = description["image_size"]
    image_channels = description["outputs"][0]["shape"][1]
    channels = CHANNELS[image_channels]
    training = json.loads((folder / "training.json").read_text()) if (folder / "training.json").exists() else {}
    inputs: list[dict[str, Any]] = [
        {"kind": "noise", "name": entry["name"], "shape": entry["shape"][1:], "distribution": "normal"}
        for entry in description["inputs"] if entry.get("distribution") == "normal"
    ]
    inputs.append({"kind": "parameter", "name": "start_scale", "parameter": "start_scale", "dtype": "int64"})
    provenance: dict[str, Any] = {"recipe": "model_store.recipes.singan_seg", "export": description,
                                  "training": training}
    if "checks" in spec:
        provenance["checks"] = spec["checks"]
    return Manifest.model_validate({
        "id": spec["id"],
        "category": spec["category"],
        "subcategory": spec["subcategory"],
        "name": spec["name"],
        "version": version,
        "description": spec["description"].format(width=width, height=height, num_scales=num_scales),
        "sha256": sha256_file(folder / "model.onnx"),
        "inputs": inputs,
        "output": {"kind": "image", "tensor": "image", "height": height, "width": width,
                   "channels": channels, "color_channels": channels[:-1], "mask_channel": "mask",
                   "value_range": [-1.0, 1.0], "file_prefix": "image"},
        "parameters": {
            "start_scale": {
                "type": "integer",
                "description": f"First scale that gets new noise, 0..{num_scales - 1}: 0 = most diverse, "
                               "higher = closer to the training image.",
                "default": 0, "minimum": 0, "maximum": num_scales - 1,
            }
        },
        "formats": ["png", "npy", "json"],
        "license": spec["license"],
        "citations": citations(spec),
        "provenance": provenance,
    })


def write(folder: Path, description: dict[str, Any], spec: dict[str, Any]) -> Manifest:
    card = manifest(folder, description, spec)
    (folder / MANIFEST_FILE).write_text(json.dumps(card.model_dump(mode="json"), indent=2) + "\n")
    return card
