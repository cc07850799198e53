"""DICOM 12-Lead ECG Waveform Storage (through pydicom): one file per ECG, its int16 samples as they are.

Each channel's sensitivity is 1 uV per unit with no baseline, so `Dataset.waveform_array` reads the samples back
exactly. Leads are coded with the MDC codes of DICOM's CID 3001 and an annotated ECG's global measurements go into
the Waveform Annotation Sequence with their MDC/LOINC codes (CIDs 3227-3229), all as pydicom's code dictionary
holds them. The patient module says the patient is synthetic; the identifiers (UIDs from the model, seed and
sample index, fixed dates) make the same request give the same bytes. dicom3tools' dciodvfy passes the files with
no error or warning (tests/workers/test_ecg_formats.py)."""

from __future__ import annotations

import io

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from deepsynthbody import __version__
from model_store.sizes import DICOM_MEASUREMENTS
from workers.encoders.base import EncodeContext
from workers.encoders.edf import scalar_measurements

TWELVE_LEAD_ECG_STORAGE = "1.2.840.10008.5.1.4.1.1.9.1.1"
DATE, TIME = "19850101", "000000"  # fixed: a synthetic ECG was never recorded at any time
LEAD_CODES: dict[str, Code] = {
    "I": codes.cid3001.LeadI, "II": codes.cid3001.LeadII, "III": codes.cid3001.LeadIII,
    "aVR": codes.cid3001.AvrAugmentedVoltageRight, "aVL": codes.cid3001.AvlAugmentedVoltageLeft,
    "aVF": codes.cid3001.AvfAugmentedVoltageFoot,
    **{f"V{k}": getattr(codes.cid3001, f"LeadV{k}") for k in range(1, 7)},
}
MEASUREMENT_CODES: dict[str, Code] = {
    "heart_rate": codes.LN.HeartRate, "rr_mean": codes.cid3228.RRIntervalGlobal,
    "pr_interval": codes.cid3228.PRIntervalGlobal, "qrs_duration": codes.cid3228.QRSDurationGlobal,
    "qt_interval": codes.cid3228.QTIntervalGlobal, "qtc_bazett": codes.cid3227.QtcGlobalUsingBazettFormula,
    "qtc_fridericia": codes.cid3227.QtcGlobalUsingFredericiaFormula,
    "p_axis": codes.cid3229.PAxis, "qrs_axis": codes.cid3229.QRSAxis, "t_axis": codes.cid3229.TAxis,
}
assert len(MEASUREMENT_CODES) <= DICOM_MEASUREMENTS  # what the disk budget's bound allows for
UNIT_CODES = {"bpm": codes.UCUM.PerMinute, "ms": codes.UCUM.Millisecond, "deg": codes.UCUM.Degree}
MAX_CHANNELS = 13  # the 12-lead IOD's limit


def _coded(code: Code) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code.value, code.scheme_designator, code.meaning
    return item


class DicomWriter:
    def __init__(self, ctx: EncodeContext) -> None:
        unknown = [name for name in ctx.channel_names if name not in LEAD_CODES]
        if unknown or len(ctx.channel_names) > MAX_CHANNELS or ctx.output.dtype != "int16" or ctx.output.unit != "uV":
            raise ValueError(f"DICOM 12-lead ECG needs at most {MAX_CHANNELS} standard leads of int16 uV "
                             f"(not {ctx.channel_names}, {ctx.output.dtype} {ctx.output.unit})")
        self.ctx = ctx
        self.channels = Sequence([self._channel(name) for name in ctx.channel_names])

    @staticmethod
    def _channel(name: str) -> Dataset:
        channel = Dataset()
        channel.ChannelSourceSequence = [_coded(LEAD_CODES[name])]
        channel.ChannelSensitivity = "1"
        channel.ChannelSensitivityUnitsSequence = [_coded(codes.UCUM.Microvolt)]
        channel.ChannelSensitivityCorrectionFactor = "1"
        channel.ChannelBaseline = "0"
        channel.ChannelSampleSkew = "0"
        channel.WaveformBitsStored = 16
        channel.ChannelLabel = name
        return channel

    def write(self, samples: np.ndarray, start: int) -> None:
        for offset, sample in enumerate(samples):
            index = start + offset
            self.ctx.members.add(f"{self.ctx.stem(index)}.dcm", self._file(index, sample))

    def _uid(self, kind: str, index: int) -> str:
        """Under pydicom's root, a hash of what makes the file: the same request gives the same UIDs."""
        ctx = self.ctx
        made_of = [kind, ctx.model_id, str(ctx.model_version), str(ctx.seed), str(index), ",".join(ctx.channel_names)]
        return generate_uid(entropy_srcs=made_of)

    def _file(self, index: int, sample: np.ndarray) -> bytes:
        ctx = self.ctx
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = TWELVE_LEAD_ECG_STORAGE
        meta.MediaStorageSOPInstanceUID = self._uid("instance", index)
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.SOPClassUID, ds.SOPInstanceUID = TWELVE_LEAD_ECG_STORAGE, meta.MediaStorageSOPInstanceUID
        # patient: nobody; what made the ECG instead of a name that could be mistaken for someone's
        ds.PatientName = "SYNTHETIC^NOT A REAL PERSON"
        ds.PatientID = f"SYNTHETIC-{ctx.seed}-{index}"
        ds.PatientBirthDate, ds.PatientSex = "", ""
        ds.PatientComments = ctx.synthetic
        ds.StudyInstanceUID, ds.SeriesInstanceUID = self._uid("study", index), self._uid("series", index)
        ds.StudyDate = ds.ContentDate = ds.SeriesDate = DATE
        ds.StudyTime = ds.ContentTime = ds.SeriesTime = TIME
        ds.AcquisitionDateTime = DATE + TIME
        ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "SYNTHETIC", "", ""
        ds.StudyDescription = "Synthetic resting ECG"
        ds.SeriesDescription = ctx.synthetic[:64]
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "ECG", 1, index + 1
        ds.Manufacturer, ds.ManufacturerModelName = "DeepSynthBody", f"{ctx.model_id} v{ctx.model_version}"[:64]
        ds.SoftwareVersions = [f"deepsynthbody {__version__}", f"model {ctx.model_id} {ctx.model_version}"]
        ds.AcquisitionContextSequence = []
        group = Dataset()
        group.WaveformOriginality = "ORIGINAL"
        group.NumberOfWaveformChannels = sample.shape[1]
        group.NumberOfWaveformSamples = sample.shape[0]
        group.SamplingFrequency = f"{ctx.output.sampling_rate:g}"
        group.MultiplexGroupLabel = "RHYTHM"
        group.ChannelDefinitionSequence = self.channels
        group.WaveformBitsAllocated = 16
        group.WaveformSampleInterpretation = "SS"
        group.WaveformData = np.ascontiguousarray(sample, "<i2").tobytes()  # sample by sample, channels interleaved
        ds.WaveformSequence = [group]
        measured = scalar_measurements(ctx.measurements.get(index))
        annotations = [self._measurement(key, value, unit) for key, _, value, unit in measured
                       if key in MEASUREMENT_CODES]
        if annotations:
            ds.WaveformAnnotationSequence = annotations
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
        return out.getvalue()

    @staticmethod
    def _measurement(key: str, value: float, unit: str) -> Dataset:
        item = Dataset()
        item.ReferencedWaveformChannels = [1, 0]  # multiplex group 1, every channel: a global measurement
        item.AnnotationGroupNumber = 0
        item.ConceptNameCodeSequence = [_coded(MEASUREMENT_CODES[key])]
        item.NumericValue = f"{value:.6g}"
        item.MeasurementUnitsCodeSequence = [_coded(UNIT_CODES[unit])]
        return item
