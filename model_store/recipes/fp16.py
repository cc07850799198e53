"""An fp16 variant of an fp32 ONNX generator: weights and arithmetic in half precision, inputs and outputs float32.

Uses onnxconverter-common's float16 converter (keep_io_types: callers feed the same float32 noise and get
float32 output, so the worker's noise and int16 conversion are unchanged). Tiny weights below fp16's
normal range are clamped by the converter to +-1e-7, which is part of the variant's difference from fp32.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import onnx


def to_fp16(source: Path, target: Path) -> Path:
    from onnxconverter_common import float16

    model = onnx.load(str(source))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # one warning per clamped weight
        half = float16.convert_float_to_float16(model, keep_io_types=True)
    onnx.save(half, str(target))
    return target
