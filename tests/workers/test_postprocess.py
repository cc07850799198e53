"""Raw generator output to microvolts: rounded, derived leads by the standard formulas."""

from __future__ import annotations

import numpy as np

from model_store.manifest import ImageOutput, SignalOutput
from model_store.recipes.pulse2pulse_ecg import MANIFEST_TEMPLATE
from workers.postprocess import image_samples, signal_samples

ECG_OUTPUT = SignalOutput.model_validate(MANIFEST_TEMPLATE["output"])


def test_values_are_rounded_not_truncated() -> None:
    raw = np.zeros((1, 8, 5000), dtype=np.float32)
    raw[0, 0, :3] = [0.9999 / 6000, -0.9999 / 6000, 100.6 / 6000]  # 0.9999 uV, -0.9999 uV, 100.6 uV
    out = signal_samples(raw, ECG_OUTPUT, {"leads": 8})
    assert out.dtype == np.int16 and out.shape == (1, 5000, 8)
    assert out[0, :3, 0].tolist() == [1, -1, 101]  # the original package's .int() gives 0, 0, 100


def test_twelve_leads_follow_einthoven_and_goldberger() -> None:
    rng = np.random.default_rng(0)
    raw = rng.uniform(-0.3, 0.3, size=(2, 8, 5000)).astype(np.float32)
    out = signal_samples(raw, ECG_OUTPUT, {"leads": 12}).astype(float)
    lead_i, lead_ii = raw[:, 0].astype(float) * 6000, raw[:, 1].astype(float) * 6000
    expected = {
        "III": lead_ii - lead_i,
        "aVR": -(lead_i + lead_ii) / 2,
        "aVL": lead_i - lead_ii / 2,
        "aVF": lead_ii - lead_i / 2,
    }
    for column, name in enumerate(["I", "II", "III", "aVR", "aVL", "aVF"]):
        reference = {"I": lead_i, "II": lead_ii}.get(name, expected.get(name))
        assert np.abs(out[:, :, column] - reference).max() <= 0.5 + 1e-3, name
    np.testing.assert_array_equal(out[:, :, 6:], signal_samples(raw, ECG_OUTPUT, {"leads": 8})[:, :, 2:])


def test_image_mask_is_strictly_binary() -> None:
    spec = ImageOutput(tensor="image", height=4, width=5, channels=["R", "G", "B", "mask"], mask_channel="mask")
    raw = np.random.default_rng(1).uniform(-1, 1, size=(3, 4, 4, 5)).astype(np.float32)
    out = image_samples(raw, spec)
    assert out.shape == (3, 4, 5, 4) and out.dtype == np.uint8
    assert set(np.unique(out[..., 3])) <= {0, 255}
