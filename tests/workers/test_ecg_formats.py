"""EDF+, DICOM and the printouts: each read back by its own library, equal to the samples; each says it is synthetic."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import mne
import numpy as np
import pydicom
import pyedflib
import pytest
from PIL import Image
from pydantic import ValidationError

from model_store import sizes
from model_store.manifest import Manifest, SignalOutput
from model_store.recipes.pulse2pulse_ecg import LEADS, MANIFEST_TEMPLATE, TWELVE_LEADS
from workers import postprocess
from workers.archive import MemberZip
from workers.encoders import ENCODERS, EncodeContext
from workers.encoders.printout import DPI, GRID, GRID_ORIGIN, PAGE, ROWS_Y, SPEED, TRACE_X0, twelve_leads

ECG_OUTPUT = SignalOutput.model_validate(MANIFEST_TEMPLATE["output"])
MANIFEST = Manifest.model_validate({**MANIFEST_TEMPLATE, "sha256": "0" * 64})
SYNTHETIC = "SYNTHETIC data made by DeepSynthBody model pulse2pulse-ecg version 2; no real person"
MEASURED = {
    "heart_rate": 72.4, "rr_mean": 828.0, "rr_sd": 12.5, "pr_interval": 158.0, "qrs_duration": 94.0,
    "qt_interval": 392.0, "qtc_bazett": 431.0, "qtc_fridericia": 418.0, "p_axis": 52.0, "qrs_axis": 31.0,
    "t_axis": None,  # not measurable: left out, never a guess
    "fiducials": {"P_onset": [40, 454], "P_peak": [70, 484], "P_offset": [95, 509], "QRS_onset": [119, 533],
                  "R_peaks": [140, 554, 968], "QRS_offset": [166, 580], "T_peak": [300, 714], "T_offset": [330, 744]},
}


def _ecgs(count: int, leads: int, seed: int = 5) -> np.ndarray:
    values = (np.random.default_rng(seed).standard_normal((count, 5000, leads)) * 800).astype(np.int16)
    values[0, 0, :2] = [np.iinfo(np.int16).min, np.iinfo(np.int16).max]  # the whole int16 range is kept
    return values


def _encode(fmt: str, samples: np.ndarray, names: list[str], tmp_path: Path, measurements: dict | None = None,
            batches: int = 1, first: int = 0) -> dict[str, bytes]:
    """The members a writer makes for `samples` from `first` on (another chunk's), given to it in `batches`."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    with MemberZip(tmp_path / "members.zip", "stored") as members:
        ctx = EncodeContext(ECG_OUTPUT, names, 9, len(samples), members, tmp_path, measurements=measurements or {},
                            model_id="pulse2pulse-ecg", model_version=2)
        writer = ENCODERS[fmt](ctx)
        for part in np.array_split(np.arange(first, len(samples)), batches):
            writer.write(samples[part], int(part[0]))
    with zipfile.ZipFile(tmp_path / "members.zip") as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _edf(data: bytes, tmp_path: Path) -> pyedflib.EdfReader:
    path = tmp_path / "read.edf"
    path.write_bytes(data)
    return pyedflib.EdfReader(str(path))


@pytest.mark.parametrize("names", [LEADS, TWELVE_LEADS], ids=["8-leads", "12-leads"])
def test_edf_reads_back_equal_with_pyedflib(names: list[str], tmp_path: Path) -> None:
    ecgs = _ecgs(3, len(names))
    files = _encode("edf", ecgs, names, tmp_path / "out")
    assert sorted(files) == ["ecg_00000.edf", "ecg_00001.edf", "ecg_00002.edf"]
    for index, sample in enumerate(ecgs):
        data = files[f"ecg_{index:05d}.edf"]
        reader = _edf(data, tmp_path)
        try:
            physical = np.stack([reader.readSignal(k) for k in range(reader.signals_in_file)], 1)
            assert np.array_equal(physical, sample)  # physical uV, not only the digital values
            assert reader.getSignalLabels() == [f"ECG {name}" for name in names]
            assert {reader.getPhysicalDimension(k) for k in range(len(names))} == {"uV"}
            assert reader.getSampleFrequency(0) == 500
            assert reader.getPatientName() == "SYNTHETIC"
            assert reader.getPatientAdditional() == "not_a_real_person_pulse2pulse-ecg_v2"
            assert reader.getRecordingAdditional() == "SYNTHETIC_seed_9"
            assert reader.readAnnotations()[0].size == 0  # a plain job measured nothing
        finally:
            reader.close()
        assert len(data) == sizes.edf_file_bound(5000, 500.0, len(names), annotated=False)  # the disk budget's


def test_edf_carries_an_annotated_ecgs_measurements_as_tals(tmp_path: Path) -> None:
    ecgs = _ecgs(2, 8)
    files = _encode("edf", ecgs, LEADS, tmp_path / "out", measurements={1: MEASURED})
    reader = _edf(files["ecg_00001.edf"], tmp_path)
    try:
        onsets, durations, texts = reader.readAnnotations()
        assert np.array_equal(np.stack([reader.readSignal(k) for k in range(8)], 1), ecgs[1])
    finally:
        reader.close()
    points = {(round(onset * 500), text) for onset, duration, text in zip(onsets, durations, texts) if duration < 0}
    labels = {"P_onset": "P onset", "P_peak": "P peak", "P_offset": "P offset", "QRS_onset": "QRS onset",
              "R_peaks": "R peak", "QRS_offset": "QRS offset", "T_peak": "T peak", "T_offset": "T offset"}
    assert points == {(index, labels[key]) for key, indices in MEASURED["fiducials"].items() for index in indices}
    whole = {text for onset, duration, text in zip(onsets, durations, texts) if duration == 10.0 and onset == 0}
    assert {"HR 72.4 bpm", "PR 158 ms", "QRS 94 ms", "QT 392 ms", "QTc Bazett 431 ms", "P axis 52 deg"} <= whole
    assert not any(text.startswith("T axis") for text in whole)
    assert len(files["ecg_00001.edf"]) <= sizes.edf_file_bound(5000, 500.0, 8, annotated=True)


def test_edf_reads_in_mne_as_ecg_channels_in_volts_with_the_fiducial_points(tmp_path: Path) -> None:
    """MNE-Python, what many researchers load EDF with: ECG channels by their labels, the samples (in volts) equal
    to the job's microvolts, every fiducial point an annotation at its sample, the patient named synthetic."""
    ecgs = _ecgs(2, len(TWELVE_LEADS))
    files = _encode("edf", ecgs, TWELVE_LEADS, tmp_path / "out", measurements={1: MEASURED})
    for index, sample in enumerate(ecgs):
        path = tmp_path / f"ecg_{index:05d}.edf"
        path.write_bytes(files[path.name])
        raw = mne.io.read_raw_edf(path, preload=True, infer_types=True, verbose="error")
        assert raw.ch_names == TWELVE_LEADS and set(raw.get_channel_types()) == {"ecg"}
        assert raw.info["sfreq"] == 500.0 and raw.info["subject_info"]["last_name"] == "SYNTHETIC"
        assert np.array_equal(np.round(raw.get_data().T * 1e6), sample)
        points = {(round(a["onset"] * 500), a["description"]) for a in raw.annotations if a["duration"] == 0}
        assert len(points) == (sum(map(len, MEASURED["fiducials"].values())) if index == 1 else 0)
    assert (140, "R peak") in points and (744, "T offset") in points


@pytest.mark.parametrize("names", [LEADS, TWELVE_LEADS], ids=["8-leads", "12-leads"])
def test_dicom_reads_back_equal_with_pydicom(names: list[str], tmp_path: Path) -> None:
    ecgs = _ecgs(3, len(names))
    files = _encode("dicom", ecgs, names, tmp_path / "out", measurements={2: MEASURED})
    uids = set()
    for index, sample in enumerate(ecgs):
        ds = pydicom.dcmread(io.BytesIO(files[f"ecg_{index:05d}.dcm"]))
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.9.1.1" and ds.Modality == "ECG"
        assert ds.waveform_array(0).shape == sample.shape and np.array_equal(ds.waveform_array(0), sample)
        channels = ds.WaveformSequence[0].ChannelDefinitionSequence
        assert [c.ChannelLabel for c in channels] == names
        assert channels[names.index("V1")].ChannelSourceSequence[0].CodeValue == "2:3"  # MDC, CID 3001
        assert {c.ChannelSensitivityUnitsSequence[0].CodeValue for c in channels} == {"uV"}
        assert str(ds.PatientName).startswith("SYNTHETIC") and ds.PatientID == f"SYNTHETIC-9-{index}"
        assert ds.PatientComments == SYNTHETIC and ds.PatientBirthDate == "" and ds.PatientSex == ""
        assert ds.ManufacturerModelName == "pulse2pulse-ecg v2"
        uids.add(ds.SOPInstanceUID)
    assert len(uids) == 3
    measured = pydicom.dcmread(io.BytesIO(files["ecg_00002.dcm"])).WaveformAnnotationSequence
    values = {item.ConceptNameCodeSequence[0].CodeMeaning:
              (float(item.NumericValue), item.MeasurementUnitsCodeSequence[0].CodeValue) for item in measured}
    assert values["Heart rate"] == (72.4, "/min") and values["QRS duration global"] == (94.0, "ms")
    assert values["QTc global using Bazett formula"] == (431.0, "ms") and values["P Axis"] == (52.0, "deg")
    assert "T axis" not in values
    for index, name in enumerate(sorted(files)):  # under the disk budget's bound for one file
        bound = sizes.archive_bound(MANIFEST, "dicom", 1, {"leads": len(names)}, annotated=index == 2)
        assert len(files[name]) <= bound - sizes.MANIFEST - sizes.ZIP_END - 2 * sizes.ZIP_MEMBER - 1024
    assert "WaveformAnnotationSequence" not in pydicom.dcmread(io.BytesIO(files["ecg_00000.dcm"]))


@pytest.mark.parametrize("names", [LEADS, TWELVE_LEADS], ids=["8-leads", "12-leads"])
def test_dicom_passes_dicom3tools_validator(names: list[str], tmp_path: Path) -> None:
    """dciodvfy checks each file against the 12-Lead ECG IOD of the standard (every module, type and condition):
    no error and no warning, with and without measurements."""
    dciodvfy = shutil.which("dciodvfy")
    assert dciodvfy, "dciodvfy is missing: install Debian's dicom3tools (apt-get install -y dicom3tools); .ci/run does"
    files = _encode("dicom", _ecgs(2, len(names)), names, tmp_path / "out", measurements={1: MEASURED})
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        checked = subprocess.run([dciodvfy, str(tmp_path / name)], capture_output=True, text=True, timeout=60,
                                 check=False)  # it says what it found; the lines are read below
        said = (checked.stdout + checked.stderr).splitlines()
        assert said and said[0] == "TwelveLeadECG", said  # the IOD it recognised
        assert not [line for line in said if line.startswith(("Error", "Warning"))], (name, said)


@pytest.mark.parametrize("fmt", ["edf", "dicom", "pdf", "png"])
def test_same_samples_same_bytes_in_any_batches(fmt: str, tmp_path: Path) -> None:
    """Archives are a recipe's output: no clock, no chunking, no page before leaves a trace in a file."""
    ecgs = _ecgs(3, 8)
    whole = _encode(fmt, ecgs, LEADS, tmp_path / "a")
    assert whole == _encode(fmt, ecgs, LEADS, tmp_path / "b", batches=3)
    later_chunk = _encode(fmt, ecgs, LEADS, tmp_path / "c", first=1)  # a writer whose first page is sample 1
    assert later_chunk == {name: data for name, data in whole.items() if not name.startswith("ecg_00000")}


def test_printout_derives_the_limb_leads_as_the_12_lead_output_does() -> None:
    raw = np.random.default_rng(2).uniform(-0.3, 0.3, (1, 8, 5000)).astype(np.float32)
    eight = postprocess.signal_samples(raw, ECG_OUTPUT, {"leads": 8})[0]
    twelve = postprocess.signal_samples(raw, ECG_OUTPUT, {"leads": 12})[0]
    derived = twelve_leads(eight, LEADS, ECG_OUTPUT)
    for k, name in enumerate(TWELVE_LEADS):
        # the 12-lead output derives before rounding to 1 uV, the printout after: they differ by 1 uV at most
        assert np.abs(derived[name] - twelve[:, k]).max() <= 1.0, name


def _pixel(x_mm: float, y_mm: float) -> tuple[int, int]:
    """Page pixel (column, row) of a point on the grid, in mm from the grid's lower left corner."""
    per_mm = DPI / 25.4
    return round((GRID_ORIGIN[0] + x_mm) * per_mm), round((PAGE[1] - GRID_ORIGIN[1] - y_mm) * per_mm)


def test_png_printout_is_the_standard_page_at_25_mm_s_and_10_mm_mv(tmp_path: Path) -> None:
    """A flat ECG with a 1 mV step in lead II from 4 s to 6 s: on the rhythm strip the trace is 10 mm up exactly
    between 100 mm and 150 mm after its start, on the baseline elsewhere."""
    ecg = np.zeros((1, 5000, 8), np.int16)
    ecg[0, 2000:3000, LEADS.index("II")] = 1000
    page = Image.open(io.BytesIO(_encode("png", ecg, LEADS, tmp_path / "out")["ecg_00000.png"]))
    assert page.size == (int(PAGE[0] / 25.4 * DPI), int(PAGE[1] / 25.4 * DPI))  # A4 landscape
    assert page.text["Subject"] == SYNTHETIC and "synthetic" in page.text["Keywords"]
    pixels = np.asarray(page.convert("L"))

    def dark(x_mm: float, y_mm: float) -> bool:
        column, row = _pixel(x_mm, y_mm)
        return pixels[row - 1:row + 2, column - 1:column + 2].min() < 120  # ink; the grid is lighter (157, 214)

    rhythm = ROWS_Y[3]
    for seconds in (1.0, 3.0, 7.0, 9.0):
        assert dark(TRACE_X0 + seconds * SPEED, rhythm) and not dark(TRACE_X0 + seconds * SPEED, rhythm + 10)
    for seconds in (4.5, 5.0, 5.5):
        assert dark(TRACE_X0 + seconds * SPEED, rhythm + 10) and not dark(TRACE_X0 + seconds * SPEED, rhythm)
    # the millimetre grid: major lines every 5 mm are darker than minor ones, minor ones darker than paper
    def lightest_dark(x_mm: float) -> int:
        column, row = _pixel(x_mm, 32.5)  # a height with no horizontal line, trace or calibration pulse
        return int(pixels[row, column - 1:column + 2].min())

    assert lightest_dark(5.0) < lightest_dark(6.0) < lightest_dark(6.5) == 255  # 5 mm line, 1 mm line, paper
    assert GRID[0] >= TRACE_X0 + 10 * SPEED  # the rhythm strip's 10 s fit


def test_pdf_printout_metadata_say_synthetic(tmp_path: Path) -> None:
    files = _encode("pdf", _ecgs(1, 12), TWELVE_LEADS, tmp_path / "out", measurements={0: MEASURED})
    data = files["ecg_00000.pdf"]
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    assert re.search(rb"/Subject \(" + re.escape(SYNTHETIC.encode()) + rb"\)", data)
    assert b"/CreationDate" not in data  # no clock: same request, same bytes
    assert len(data) <= sizes.PRINTOUT_MAX_BYTES


def test_printout_header_shows_the_measurements() -> None:
    from workers.encoders.printout import _header_measurements

    shown = _header_measurements(MEASURED)
    assert "Vent. rate   72 bpm" in shown and "QT/QTc Bazett   392/431 ms" in shown
    assert "P-R-T axes   52 31 --" in shown  # the T axis was not measurable
    assert "not requested" in _header_measurements(None)


def test_only_ecg_outputs_offer_dicom_and_printouts() -> None:
    eeg = {**MANIFEST_TEMPLATE["output"], "channels": ["Fp1", "Fp2"], "derived_channels": [], "channel_sets": {},
           "channel_set_parameter": None}
    for fmt in ("dicom", "pdf", "png"):
        with pytest.raises(ValidationError, match="12-lead ECG formats"):
            Manifest.model_validate({**MANIFEST_TEMPLATE, "sha256": "0" * 64, "output": eeg, "parameters": {},
                                     "formats": ["npy", fmt]})
    Manifest.model_validate({**MANIFEST_TEMPLATE, "sha256": "0" * 64, "output": eeg, "parameters": {},
                             "formats": ["npy", "edf", "wfdb"]})  # any signal can be EDF+
