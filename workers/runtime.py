"""ONNX Runtime sessions: created once per worker process and reused by every job."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort

from deepsynthbody.errors import ModelInvalid
from deepsynthbody.settings import Settings
from model_store.manifest import ParameterInput
from model_store.store import ModelEntry, sha256_file
from workers import noise, postprocess

log = logging.getLogger(__name__)

DEFAULT_BATCH = {"CUDAExecutionProvider": 512, "CPUExecutionProvider": 32}

_sessions: dict[str, ModelRuntime] = {}


@dataclass
class ModelRuntime:
    entry: ModelEntry
    session: ort.InferenceSession
    provider: str

    def run(self, noise: dict[str, np.ndarray], params: dict[str, Any]) -> np.ndarray:
        feeds: dict[str, np.ndarray] = dict(noise)
        for spec in self.entry.manifest.inputs:
            if isinstance(spec, ParameterInput):
                feeds[spec.name] = np.asarray([params[spec.parameter]], dtype=spec.dtype)
        (output,) = self.session.run([self.entry.manifest.output.tensor], feeds)
        return output

    def postprocess(self, raw: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        return postprocess.to_samples(raw, self.entry.manifest.output, params)

    def samples(self, seed: int, start: int, count: int, params: dict[str, Any]) -> np.ndarray:
        """Samples start .. start+count-1 of `seed`, in the output's final dtype and layout."""
        return self.postprocess(self.run(noise.draw(self.entry.manifest.noise_inputs, seed, start, count), params), params)


def providers(settings: Settings) -> list[str]:
    available = ort.get_available_providers()
    if settings.use_cuda and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def load(entry: ModelEntry, settings: Settings) -> ModelRuntime:
    """The process-wide runtime of a model version; the artifact's sha256 is checked once, on load."""
    key = f"{entry.manifest.key}@{entry.manifest.sha256}"
    if key not in _sessions:
        actual = sha256_file(entry.artifact_path) if entry.artifact_path.exists() else "missing"
        if actual != entry.manifest.sha256:
            raise ModelInvalid(
                f"artifact {entry.artifact_path} does not match its manifest (sha256 {actual}, expected {entry.manifest.sha256})"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = settings.ort_threads
        # Idle intra-op threads sleep instead of spinning: the encoder and noise threads need those cores
        # (measured on 2 cores: npy 115 -> 142 ECG/s, wfdb 90 -> 98 ECG/s).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(str(entry.artifact_path), options, providers=providers(settings))
        _sessions[key] = ModelRuntime(entry, session, session.get_providers()[0])
        log.info("loaded %s on %s", entry.manifest.key, _sessions[key].provider)
    return _sessions[key]


def batch_size(model: ModelRuntime, settings: Settings) -> int:
    return settings.batch_size or DEFAULT_BATCH.get(model.provider, 32)
