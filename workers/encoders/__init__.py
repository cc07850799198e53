"""Encoders by format name; which formats a model offers comes from its manifest."""

from workers.encoders.base import EncodeContext, Encoder
from workers.encoders.bundle import write_ndjson, write_nothing
from workers.encoders.image import write_png
from workers.encoders.signal import write_asc, write_csv, write_wfdb

ENCODERS: dict[str, Encoder] = {
    "wfdb": write_wfdb,
    "csv": write_csv,
    "asc": write_asc,
    "npy": write_nothing,
    "json": write_ndjson,
    "png": write_png,
}

__all__ = ["ENCODERS", "EncodeContext", "Encoder"]
