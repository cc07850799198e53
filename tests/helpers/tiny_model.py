"""A tiny but complete contributed model (noise -> tanh -> 4-channel image), for store and API tests."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
from onnx import TensorProto, helper

from model_store.manifest import MANIFEST_FILE
from model_store.store import sha256_file


def tiny_graph(height: int = 8, out_height: int | None = None) -> onnx.ModelProto:
    """noise (N, 4, H, W) -> tanh -> image; out_height != height inserts a crop to break the promised shape."""
    nodes = [helper.make_node("Tanh", ["noise"], ["t"])]
    last = "t"
    if out_height is not None and out_height != height:
        starts = helper.make_tensor("starts", TensorProto.INT64, [1], [0])
        ends = helper.make_tensor("ends", TensorProto.INT64, [1], [out_height])
        axes = helper.make_tensor("axes", TensorProto.INT64, [1], [2])
        nodes.append(helper.make_node("Slice", ["t", "starts", "ends", "axes"], ["s"]))
        initializers = [starts, ends, axes]
        last = "s"
    else:
        initializers = []
    nodes.append(helper.make_node("Identity", [last], ["image"]))
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("noise", TensorProto.FLOAT, ["batch", 4, height, 8])],
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 4, "height", 8])],
        initializer=initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def tiny_manifest(sha: str) -> dict:
    return {
        "id": "tiny-image", "category": "integumentary", "subcategory": "skin-patch", "name": "Tiny test image model",
        "version": 1, "description": "tanh of its noise", "sha256": sha,
        "inputs": [{"kind": "noise", "name": "noise", "shape": [4, 8, 8], "distribution": "normal"}],
        "output": {"kind": "image", "tensor": "image", "height": 8, "width": 8, "channels": ["R", "G", "B", "mask"],
                   "mask_channel": "mask"},
        "formats": ["png", "npy", "json"], "license": "CC0-1.0", "citations": [{"text": "A test fixture."}],
    }


def make_model(folder: Path, graph: onnx.ModelProto | None = None, **changes: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(graph or tiny_graph(), str(folder / "model.onnx"))
    manifest = tiny_manifest(sha256_file(folder / "model.onnx")) | changes
    (folder / MANIFEST_FILE).write_text(json.dumps({k: v for k, v in manifest.items() if v is not None}))
    return folder
