"""The model card (manifest.json) of an exported SinGAN-Seg pyramid: what the service serves it by."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from model_store.manifest import MANIFEST_FILE, Manifest
from model_store.store import sha256_file

MODEL_ID = "singan-seg-polyp"
CATEGORY, SUBCATEGORY = "digestive", "gi-tract"

CITATIONS = [
    {"text": "Thambawita V, Salehi P, Sheshkal SA, et al. SinGAN-Seg: Synthetic training data generation for "
             "medical image segmentation. PLOS ONE 17(5): e0267976 (2022).", "doi": "10.1371/journal.pone.0267976"},
    {"text": "Shaham TR, Dekel T, Michaeli T. SinGAN: Learning a Generative Model from a Single Natural Image. "
             "ICCV 2019.", "doi": "10.1109/ICCV.2019.00467"},
    {"text": "Borgli H, Thambawita V, Smedsrud PH, et al. HyperKvasir, a comprehensive multi-class image and video "
             "dataset for gastrointestinal endoscopy. Scientific Data 7, 283 (2020).", "doi": "10.1038/s41597-020-00622-y"},
    {"text": "Thambawita V, Hicks SA, Isaksen J, et al. DeepSynthBody: the beginning of the end for data deficiency "
             "in medicine. ICAPAI 2021."},
]


def manifest(folder: Path, description: dict[str, Any], version: int = 1) -> Manifest:
    num_scales = description["num_scales"]
    height, width = description["image_size"]
    training = json.loads((folder / "training.json").read_text()) if (folder / "training.json").exists() else {}
    inputs: list[dict[str, Any]] = [
        {"kind": "noise", "name": spec["name"], "shape": spec["shape"][1:], "distribution": "normal"}
        for spec in description["inputs"] if spec.get("distribution") == "normal"
    ]
    inputs.append({"kind": "parameter", "name": "start_scale", "parameter": "start_scale", "dtype": "int64"})
    return Manifest.model_validate({
        "id": MODEL_ID,
        "category": CATEGORY,
        "subcategory": SUBCATEGORY,
        "name": "SinGAN-Seg polyp image + mask",
        "version": version,
        "description": (
            f"Synthetic colonoscopy frames showing a polyp, {width}x{height} px RGB, each with its binary "
            f"segmentation mask (0/255), from a {num_scales}-scale SinGAN-Seg pyramid trained on one HyperKvasir "
            "polyp image. start_scale 0 draws new noise at every scale (most diverse); higher values keep more of "
            "the training image's layout."
        ),
        "sha256": sha256_file(folder / "model.onnx"),
        "inputs": inputs,
        "output": {"kind": "image", "tensor": "image", "height": height, "width": width,
                   "channels": ["R", "G", "B", "mask"], "color_channels": ["R", "G", "B"], "mask_channel": "mask",
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
        "license": "Weights CC BY 4.0 (trained on a HyperKvasir image: credit Borgli et al. 2020); recipe code MIT",
        "citations": CITATIONS,
        "provenance": {"recipe": "model_store.recipes.singan_seg", "export": description, "training": training},
    })


def write(folder: Path, description: dict[str, Any]) -> Manifest:
    card = manifest(folder, description)
    (folder / MANIFEST_FILE).write_text(json.dumps(card.model_dump(mode="json"), indent=2) + "\n")
    return card
