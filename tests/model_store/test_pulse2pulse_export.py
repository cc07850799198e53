"""The exported ECG graph computes what the deepfake-ecg checkpoint computes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from deepsynthbody.core.settings import Settings
from model_store.manifest import MANIFEST_FILE
from model_store.recipes.polyphase import polyphase
from model_store.recipes.pulse2pulse_ecg import MODEL_ID, VERSIONS, load_generator
from model_store.store import load_manifest, open_store, sha256_file


def _session(settings: Settings, version: int) -> ort.InferenceSession:
    path = open_store(settings).get(MODEL_ID, version).artifact_path
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("version", VERSIONS)
def test_onnx_matches_torch_within_1e4_on_the_tanh_output(ecg_model_dir: Path, settings: Settings,
                                                          version: int) -> None:
    session = _session(settings, version)
    generator = load_generator()  # the checkpoint as published, whatever form the version computes it in
    for batch in (1, 5):  # the batch axis is dynamic
        noise = np.random.default_rng(batch).uniform(-1, 1, size=(batch, 8, 5000)).astype(np.float32)
        (onnx_out,) = session.run(["ecg"], {"noise": noise})
        with torch.no_grad():
            torch_out = generator(torch.from_numpy(noise)).numpy()
        assert onnx_out.shape == (batch, 8, 5000)
        assert np.abs(onnx_out - torch_out).max() <= 1e-4


def test_version_2_computes_version_1_with_fewer_operations(ecg_model_dir: Path, settings: Settings) -> None:
    noise = np.random.default_rng(7).uniform(-1, 1, size=(4, 8, 5000)).astype(np.float32)
    (v1,) = _session(settings, 1).run(["ecg"], {"noise": noise})
    (v2,) = _session(settings, 2).run(["ecg"], {"noise": noise})
    assert np.abs(v1 - v2).max() <= 1e-5  # float32 sums in another order: about 1e-6 on the tanh output
    convs = {version: [n for n in onnx.load(str(open_store(settings).get(MODEL_ID, version).artifact_path)).graph.node
                       if n.op_type == "Conv"] for version in (1, 2)}
    assert len(convs[1]) == len(convs[2]) == 12 and not any(n.op_type == "Resize" for n in convs[2])


@pytest.mark.parametrize(("factor", "taps", "pad"), [(5, 25, 12), (2, 25, 12), (3, 7, 3), (2, 3, 1), (4, 9, 4)])
def test_polyphase_form_equals_upsample_pad_convolve(factor: int, taps: int, pad: int) -> None:
    torch.manual_seed(factor * 100 + taps)
    conv = torch.nn.Conv1d(6, 5, taps).double()
    x = torch.randn(3, 6, 40, dtype=torch.float64)
    upsampled = torch.nn.functional.interpolate(x, scale_factor=factor, mode="nearest")
    expected = conv(torch.nn.functional.pad(upsampled, (pad, pad)))
    with torch.no_grad():
        got = polyphase(conv, factor, pad).double()(x)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, rtol=0, atol=1e-5)  # the summed kernels are stored in float32


def test_polyphase_refuses_a_convolution_it_does_not_cover() -> None:
    with pytest.raises(ValueError, match="stride-1"):
        polyphase(torch.nn.Conv1d(2, 2, 5, stride=2), 5, 2)
    with pytest.raises(ValueError, match="length-preserving"):
        polyphase(torch.nn.Conv1d(2, 2, 5), 5, 0)


def test_manifest_names_the_artifact_and_its_checksum(ecg_model_dir: Path) -> None:
    manifest = load_manifest(ecg_model_dir)
    assert (ecg_model_dir / MANIFEST_FILE).exists()
    assert manifest.sha256 == sha256_file(ecg_model_dir / manifest.artifact)
    assert (manifest.category, manifest.subcategory, manifest.output.kind) == ("cardiovascular", "ecg", "signal")
    graph = onnx.load(str(ecg_model_dir / manifest.artifact))
    onnx.checker.check_model(graph)
    batch_dim = graph.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value
