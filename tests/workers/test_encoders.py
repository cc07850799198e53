"""The fast encoders write exactly what the reference implementations write."""

from __future__ import annotations

import filecmp
import io
import zipfile
from pathlib import Path

import numpy as np
import wfdb

from model_store.manifest import SignalOutput
from model_store.recipes.pulse2pulse_ecg import MANIFEST_TEMPLATE, TWELVE_LEADS
from workers.archive import MemberZip
from workers.encoders import ENCODERS, EncodeContext
from workers.encoders.text import int16_rows

ECG_OUTPUT = SignalOutput.model_validate(MANIFEST_TEMPLATE["output"])


def _ecgs(count: int) -> np.ndarray:
    values = (np.random.default_rng(5).standard_normal((count, 5000, 12)) * 3000).astype(np.int16)
    values[0, 0, :2] = [np.iinfo(np.int16).min, np.iinfo(np.int16).max]
    return values


def test_text_rows_equal_numpy_savetxt() -> None:
    sample = _ecgs(1)[0]
    for delimiter in (",", " "):
        reference = io.BytesIO()
        np.savetxt(reference, sample, fmt="%d", delimiter=delimiter)
        assert int16_rows(sample, delimiter) == reference.getvalue()


def test_wfdb_records_equal_wfdb_wrsamp(tmp_path: Path) -> None:
    ecgs = _ecgs(6)
    ecgs[4] = -ecgs[4]  # other signs of initial values and checksums
    ecgs[5, 0] = 0
    ours, reference = tmp_path / "ours", tmp_path / "reference"
    reference.mkdir()
    with MemberZip(tmp_path / "members.zip", "stored") as members:
        ctx = EncodeContext(ECG_OUTPUT, TWELVE_LEADS, 1, 6, members, tmp_path, model_id="pulse2pulse-ecg",
                            model_version=2)
        writer = ENCODERS["wfdb"](ctx)
        writer.write(ecgs[:1], 0)
        writer.write(ecgs[1:], 1)
    zipfile.ZipFile(tmp_path / "members.zip").extractall(ours)
    for index, sample in enumerate(ecgs):
        wfdb.wrsamp(f"ecg_{index:05d}", fs=500.0, units=["mV"] * 12, sig_name=TWELVE_LEADS,
                    d_signal=sample.astype(np.int64), fmt=["16"] * 12, adc_gain=[1000.0] * 12, baseline=[0] * 12,
                    comments=[ctx.synthetic], write_dir=str(reference))
    names = sorted(p.name for p in reference.iterdir())
    assert sorted(p.name for p in ours.iterdir()) == names and len(names) == 12
    _, mismatch, errors = filecmp.cmpfiles(ours, reference, names, shallow=False)
    assert mismatch == [] and errors == []
    assert wfdb.rdheader(str(ours / "ecg_00003")).comments == [
        "SYNTHETIC data made by DeepSynthBody model pulse2pulse-ecg version 2; no real person"]
