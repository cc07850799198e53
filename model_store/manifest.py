"""The manifest schema: everything the service knows about a model comes from here."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PositiveInt, model_validator

from model_store.catalog import BODY_SYSTEMS

MANIFEST_FILE = "manifest.json"

# What each kind of output can be encoded to; workers/encoders implements exactly these.
FORMATS_BY_KIND: dict[str, tuple[str, ...]] = {
    "signal": ("wfdb", "csv", "asc", "npy", "json", "edf", "dicom", "pdf", "png"),
    "image": ("png", "npy", "json"),
}
# A signal's DICOM is a 12-lead ECG and its PNG or PDF the 12-lead printout: standard leads in uV, all 12 known.
ECG_FORMATS = ("dicom", "pdf", "png")
ECG_LEADS = frozenset({"I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"})

# Request fields every generation request has; a model's own parameters may not reuse them.
RESERVED_FIELDS = frozenset({"num_samples", "seed", "format", "version", "model", "precision", "annotate", "where"})

# Measurements workers can make of a model's samples (workers/annotations.py): a model declaring one accepts
# `"annotate": true` and `"where"` filters over them.
MEASUREMENT_KINDS = ("ecg",)

# The arithmetic of `artifact` is fp32; a model may also ship variants in these precisions.
VARIANT_PRECISIONS = ("fp16", "bf16")

_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def _slug(value: str) -> str:
    if not _SLUG.fullmatch(value):
        raise ValueError(f"{value[:80]!r} must be 1 to 64 lowercase letters, digits and '-', starting with a letter or "
                         "digit: it names a folder of the model store")
    return value


def _file_name(value: str) -> str:
    if not _FILE_NAME.fullmatch(value) or ".." in value:
        raise ValueError(f"{value[:80]!r} must be a plain file name inside the model folder: letters, digits, '.', "
                         "'_' and '-', not starting with '.', no '/' and no '..'")
    return value


_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")


def _prefix(value: str) -> str:
    if not _PREFIX.fullmatch(value):
        raise ValueError(f"{value[:80]!r} must be 1 to 32 letters, digits, '_' and '-', starting with a letter or "
                         "digit: it begins the names of the archive's files")
    return value


# Manifest values that become parts of paths (store folders, files, archive members): a safe alphabet only
Slug = Annotated[str, AfterValidator(_slug)]
FileName = Annotated[str, AfterValidator(_file_name)]
FilePrefix = Annotated[str, AfterValidator(_prefix)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NoiseInput(_Strict):
    """A noise tensor the worker draws from its counter-based generator, per sample."""

    kind: Literal["noise"] = "noise"
    name: str
    shape: list[PositiveInt] = Field(description="Per-sample shape, without the batch axis.")
    dtype: Literal["float32"] = "float32"
    distribution: Literal["uniform", "normal"]
    low: float = -1.0
    high: float = 1.0


class ParameterInput(_Strict):
    """A graph input fed from one of the model's request parameters (same value for the batch)."""

    kind: Literal["parameter"] = "parameter"
    name: str
    parameter: str
    dtype: Literal["int64", "float32"]


ModelInput = Annotated[NoiseInput | ParameterInput, Field(discriminator="kind")]


class Parameter(_Strict):
    """A request parameter the model declares; the API validates requests against it."""

    type: Literal["integer", "number", "boolean"]
    description: str
    default: int | float | bool
    minimum: int | float | None = None
    maximum: int | float | None = None
    enum: list[int | float] | None = None


class DerivedChannel(_Strict):
    name: str
    weights: dict[str, float] = Field(description="Linear combination of base channels.")


class SignalOutput(_Strict):
    kind: Literal["signal"] = "signal"
    tensor: str
    channels: list[str] = Field(description="Base channel names, in the order of the tensor's axis 1.")
    sampling_rate: float
    length: PositiveInt
    unit: str
    scale: float = Field(description="Multiply the tensor by this to get values in `unit`.")
    dtype: Literal["int16"] = "int16"
    record_key: str = Field("channels", description="NDJSON key holding {channel: values}.")
    file_prefix: FilePrefix = "signal"  # archive members are named <prefix>_NNNNN.<ext>
    derived_channels: list[DerivedChannel] = []
    channel_set_parameter: str | None = None
    channel_sets: dict[str, list[str]] = {}

    @model_validator(mode="after")
    def _channel_sets_known(self) -> SignalOutput:
        known = set(self.channels) | {d.name for d in self.derived_channels}
        for derived in self.derived_channels:
            unknown = set(derived.weights) - set(self.channels)
            if unknown:
                raise ValueError(f"derived channel {derived.name} uses unknown channels {sorted(unknown)}")
        for key, names in self.channel_sets.items():
            unknown = set(names) - known
            if unknown:
                raise ValueError(f"channel set {key!r} names unknown channels {sorted(unknown)}")
        if bool(self.channel_sets) != bool(self.channel_set_parameter):
            raise ValueError("channel_sets and channel_set_parameter go together")
        return self

    def channel_names(self, params: dict[str, Any]) -> list[str]:
        if self.channel_set_parameter is None:
            return list(self.channels)
        return list(self.channel_sets[str(params[self.channel_set_parameter])])


class ImageOutput(_Strict):
    kind: Literal["image"] = "image"
    tensor: str
    height: PositiveInt
    width: PositiveInt
    channels: list[str] = Field(description="Channel names of the tensor's axis 1, e.g. R, G, B, mask.")
    color_channels: list[str] = ["R", "G", "B"]
    mask_channel: str | None = Field(None, description="Thresholded to {0, 255} and written as its own PNG.")
    value_range: tuple[float, float] = (-1.0, 1.0)
    file_prefix: FilePrefix = "image"

    @model_validator(mode="after")
    def _channels_known(self) -> ImageOutput:
        wanted = set(self.color_channels) | ({self.mask_channel} if self.mask_channel else set())
        unknown = wanted - set(self.channels)
        if unknown:
            raise ValueError(f"image output names unknown channels {sorted(unknown)}")
        return self

    def channel_names(self, params: dict[str, Any]) -> list[str]:
        return list(self.channels)


ModelOutput = Annotated[SignalOutput | ImageOutput, Field(discriminator="kind")]


class Citation(_Strict):
    text: str
    doi: str | None = None
    url: str | None = None


class Variant(_Strict):
    """The same generator at another precision: the same inputs and output, in another file."""

    artifact: FileName
    sha256: Sha256
    description: str = Field(description="How it differs from the fp32 artifact (measured), and what it is for.")


class Manifest(_Strict):
    schema_version: Literal[1] = 1
    id: Slug
    category: Literal[BODY_SYSTEMS]  # type: ignore[valid-type]
    subcategory: Slug
    name: str
    version: PositiveInt
    description: str
    artifact: FileName = "model.onnx"
    sha256: Sha256
    inputs: list[ModelInput] = Field(min_length=1)
    output: ModelOutput
    parameters: dict[str, Parameter] = {}
    formats: list[str] = Field(min_length=1)
    license: str = Field(min_length=1)
    citations: list[Citation] = Field(min_length=1)
    provenance: dict[str, Any] = {}
    measurements: Literal[MEASUREMENT_KINDS] | None = Field(  # type: ignore[valid-type]
        None, description="What the workers measure of each sample when a request asks (`annotate`, `where`).")
    variants: dict[Literal[VARIANT_PRECISIONS], Variant] = Field(  # type: ignore[valid-type]
        {}, description="Requests choose one with `precision`; the default, fp32, is `artifact`."
    )

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        supported = FORMATS_BY_KIND[self.output.kind]
        unsupported = [f for f in self.formats if f not in supported]
        if unsupported:
            raise ValueError(f"formats {unsupported} are not available for {self.output.kind} output; pick from {list(supported)}")
        ecg_only = [f for f in self.formats if f in ECG_FORMATS]
        if ecg_only and isinstance(self.output, SignalOutput):
            known = set(self.output.channels) | {d.name for d in self.output.derived_channels}
            if known != ECG_LEADS or self.output.unit != "uV":
                raise ValueError(f"formats {ecg_only} are 12-lead ECG formats: the output's channels (with derived ones) "
                                 f"must be the 12 standard leads in uV, not {sorted(known)} in {self.output.unit}")
        clashes = RESERVED_FIELDS & set(self.parameters)
        if clashes:
            raise ValueError(f"parameters {sorted(clashes)} clash with the request fields every model has")
        for name in self.parameters:
            if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
                raise ValueError(f"parameter name {name!r} must be snake_case")
        for model_input in self.inputs:
            if isinstance(model_input, ParameterInput) and model_input.parameter not in self.parameters:
                raise ValueError(f"input {model_input.name} is fed by undeclared parameter {model_input.parameter!r}")
        if isinstance(self.output, SignalOutput) and self.output.channel_set_parameter:
            param = self.parameters.get(self.output.channel_set_parameter)
            if param is None or param.enum is None:
                raise ValueError("channel_set_parameter must name a declared parameter with an enum")
            missing = [v for v in param.enum if str(v) not in self.output.channel_sets]
            if missing:
                raise ValueError(f"no channel set for {self.output.channel_set_parameter} values {missing}")
        if len(set(self.artifacts().values())) != len(self.artifacts()):
            raise ValueError("each variant needs its own artifact file")
        return self

    def artifacts(self) -> dict[str, str]:
        """Artifact file by precision, fp32 first."""
        return {"fp32": self.artifact, **{name: v.artifact for name, v in self.variants.items()}}

    def artifact_sha256(self, precision: str) -> str:
        return self.sha256 if precision == "fp32" else self.variants[precision].sha256  # type: ignore[index]

    @property
    def precisions(self) -> list[str]:
        return list(self.artifacts())

    @property
    def noise_inputs(self) -> list[NoiseInput]:
        return [i for i in self.inputs if isinstance(i, NoiseInput)]

    @property
    def key(self) -> str:
        return f"{self.id}:{self.version}"
