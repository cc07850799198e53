"""Export recipe: Pulse2Pulse (DeepFake ECG) from the deepfake-ecg 1.1.2 checkpoint to ONNX.

Two versions of the same weights: 1 is the network as published; 2 computes its decoder's
upsample-then-convolve steps in polyphase form (`model_store/recipes/polyphase.py`), the same function with
2.5x fewer multiply-adds. Version 1 stays, so datasets made with it regenerate byte for byte."""

from __future__ import annotations

import json
import platform
import shutil
import time
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

from model_store.manifest import MANIFEST_FILE, Manifest
from model_store.store import sha256_file

MODEL_ID = "pulse2pulse-ecg"
VERSIONS = (1, 2)
CATEGORY, SUBCATEGORY = "cardiovascular", "ecg"
OPSET = 17
LEADS = ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"]
TWELVE_LEADS = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]

FP16_ARTIFACT = "model.fp16.onnx"
FORMS = {
    1: "as published: nearest upsampling, zero padding, 25-tap convolution in every decoder step (0.63 GFLOP per ECG)",
    2: "decoder steps in polyphase form (model_store/recipes/polyphase.py): same weights, 0.25 GFLOP per ECG",
}
VERSION_NOTES = {
    1: "",
    2: " Version 2 computes version 1's network with fewer operations (its decoder's upsample-and-convolve "
    "steps in polyphase form): about 2x faster on CPUs. Its samples equal version 1's but for about 0.013 % "
    "of values, which differ by 1 uV (float32 sums in another order; `deepsynthbody bench` measures it). Ask for "
    "version 1 to regenerate a dataset made with it.",
}
# Version 1: measured with `deepsynthbody bench-gpu` on an H100 (README, GPU section): same noise, 64 ECGs.
FP16_NOTES = {
    1: "half-precision weights and arithmetic (float32 noise in, float32 out). On an NVIDIA H100 it makes about "
    "61,000 ECG/s against 25,000 for fp32 (42,000 with TF32); its samples differ from fp32 by up to about "
    "300 uV, 1.4 uV on average. CPU workers run it at about fp32's speed (87 vs 104 ECG/s on 2 cores).",
    2: "half-precision weights and arithmetic (float32 noise in, float32 out), meant for GPUs (version 1's fp16 "
    "ran 2.4x its fp32 on an H100); its samples differ from fp32 by up to about 225 uV, 0.66 uV on average "
    "(CPU, `deepsynthbody bench`). CPU workers run it no faster than fp32.",
}

MANIFEST_TEMPLATE: dict[str, Any] = {
    "id": MODEL_ID,
    "category": CATEGORY,
    "subcategory": SUBCATEGORY,
    "name": "DeepFake ECG (Pulse2Pulse)",
    "version": 1,
    "description": (
        "10-second, 8-lead (I, II, V1-V6) normal resting ECGs at 500 Hz from the Pulse2Pulse GAN "
        "trained on 7,233 normal ECGs of two Danish population studies. Values are microvolts. "
        "Ask for 12 leads to add III, aVR, aVL and aVF computed by Einthoven's and Goldberger's formulas."
    ),
    "artifact": "model.onnx",
    "inputs": [{"kind": "noise", "name": "noise", "shape": [8, 5000], "distribution": "uniform", "low": -1.0, "high": 1.0}],
    "output": {
        "kind": "signal",
        "tensor": "ecg",
        "channels": LEADS,
        "sampling_rate": 500.0,
        "length": 5000,
        "unit": "uV",
        "scale": 6000.0,
        "dtype": "int16",
        "record_key": "leads",
        "file_prefix": "ecg",
        "derived_channels": [
            {"name": "III", "weights": {"II": 1.0, "I": -1.0}},
            {"name": "aVR", "weights": {"I": -0.5, "II": -0.5}},
            {"name": "aVL", "weights": {"I": 1.0, "II": -0.5}},
            {"name": "aVF", "weights": {"II": 1.0, "I": -0.5}},
        ],
        "channel_set_parameter": "leads",
        "channel_sets": {"8": LEADS, "12": TWELVE_LEADS},
    },
    "parameters": {
        "leads": {
            "type": "integer",
            "description": "8 (I, II, V1-V6, as generated) or 12 (adds III, aVR, aVL, aVF).",
            "default": 8,
            "enum": [8, 12],
        }
    },
    "formats": ["wfdb", "csv", "asc", "npy", "json", "edf", "dicom", "pdf", "png"],
    "measurements": "ecg",
    "license": "MIT (deepfake-ecg 1.1.2 code and checkpoint)",
    "citations": [
        {
            "text": "Thambawita V, Isaksen JL, Hicks SA, et al. DeepFake electrocardiograms using generative "
            "adversarial networks are the beginning of the end for privacy issues in medicine. "
            "Scientific Reports 11, 21896 (2021).",
            "doi": "10.1038/s41598-021-01295-2",
        },
        {
            "text": "Thambawita V, Hicks SA, Isaksen J, et al. DeepSynthBody: the beginning of the end for data "
            "deficiency in medicine. ICAPAI 2021.",
        },
    ],
}


def load_generator():  # -> torch.nn.Module (torch is imported lazily: only this recipe needs it)
    import deepfakeecg
    import torch

    checkpoint = Path(deepfakeecg.__file__).parent / "checkpoints" / "g_stat.pt"
    generator = deepfakeecg.Generator()
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    generator.load_state_dict(state["stat_dict"])
    return generator.eval()


def to_polyphase(generator):  # torch.nn.Module -> the same module, decoder layers in polyphase form
    """Replace each decoder step `conv1d(zero_pad(upsample(x)))` by its polyphase form, in place."""
    import torch

    from model_store.recipes.polyphase import polyphase

    for layer in generator.modules():
        if not (hasattr(layer, "conv1d") and getattr(layer, "upsample", None)):
            continue  # not a decoder step, or one that runs its transposed convolution instead
        upsample, pad = layer.upsample_layer, layer.reflection_pad  # deepfake-ecg's name; it pads with zeros
        left, right = pad.padding
        if upsample.mode != "nearest" or pad.value != 0 or left != right or float(upsample.scale_factor) % 1:
            raise ValueError(f"{layer}: not a nearest-upsample + zero-pad + convolution step")
        layer.conv1d = polyphase(layer.conv1d, int(upsample.scale_factor), left)
        layer.upsample_layer, layer.reflection_pad = torch.nn.Identity(), torch.nn.Identity()
    return generator


def export(target: Path, version: int) -> Manifest:
    """Write model.onnx, its fp16 variant and manifest.json of `version` into `target` (atomically: a
    half-built model is never seen)."""
    import torch

    from model_store.recipes.fp16 import to_fp16  # onnx: the export's, not listing the recipes' (`api` does)

    staging = target.with_name(f".{target.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    started = time.perf_counter()
    generator = load_generator() if version == 1 else to_polyphase(load_generator())
    onnx_path = staging / MANIFEST_TEMPLATE["artifact"]
    with torch.no_grad():
        torch.onnx.export(
            generator,
            (torch.zeros(1, len(LEADS), 5000),),
            str(onnx_path),
            input_names=["noise"],
            output_names=["ecg"],
            dynamic_axes={"noise": {0: "batch"}, "ecg": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
    fp16_path = to_fp16(onnx_path, staging / FP16_ARTIFACT)
    manifest = Manifest.model_validate(
        {
            **MANIFEST_TEMPLATE,
            "version": version,
            "description": MANIFEST_TEMPLATE["description"] + VERSION_NOTES[version],
            "sha256": sha256_file(onnx_path),
            "variants": {"fp16": {"artifact": FP16_ARTIFACT, "sha256": sha256_file(fp16_path),
                                  "description": FP16_NOTES[version]}},
            "provenance": {
                "recipe": __name__,
                "source": f"deepfake-ecg {package_version('deepfake-ecg')} checkpoints/g_stat.pt",
                "form": FORMS[version],
                "exporter": f"torch {torch.__version__}, opset {OPSET}, dynamic batch axis",
                "fp16_variant": f"onnxconverter-common {package_version('onnxconverter-common')} float16 "
                "converter, float32 inputs and outputs",
                "export_seconds": round(time.perf_counter() - started, 1),
                "platform": platform.platform(),
            },
        }
    )
    (staging / MANIFEST_FILE).write_text(json.dumps(manifest.model_dump(mode="json"), indent=2))
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging.rename(target)
    return manifest
