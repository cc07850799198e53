"""The exported ECG graph computes what the deepfake-ecg checkpoint computes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from model_store.manifest import MANIFEST_FILE
from model_store.recipes.pulse2pulse_ecg import load_generator
from model_store.store import load_manifest, sha256_file


def test_onnx_matches_torch_within_1e4_on_the_tanh_output(ecg_model_dir: Path) -> None:
    session = ort.InferenceSession(str(ecg_model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    generator = load_generator()
    for batch in (1, 5):  # the batch axis is dynamic
        noise = np.random.default_rng(batch).uniform(-1, 1, size=(batch, 8, 5000)).astype(np.float32)
        (onnx_out,) = session.run(["ecg"], {"noise": noise})
        with torch.no_grad():
            torch_out = generator(torch.from_numpy(noise)).numpy()
        assert onnx_out.shape == (batch, 8, 5000)
        assert np.abs(onnx_out - torch_out).max() <= 1e-4


def test_manifest_names_the_artifact_and_its_checksum(ecg_model_dir: Path) -> None:
    manifest = load_manifest(ecg_model_dir)
    assert (ecg_model_dir / MANIFEST_FILE).exists()
    assert manifest.sha256 == sha256_file(ecg_model_dir / manifest.artifact)
    assert (manifest.category, manifest.subcategory, manifest.output.kind) == ("cardiovascular", "ecg", "signal")
    graph = onnx.load(str(ecg_model_dir / manifest.artifact))
    onnx.checker.check_model(graph)
    batch_dim = graph.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value
