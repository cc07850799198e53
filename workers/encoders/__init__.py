"""Encoders by format name; which formats a model offers comes from its manifest."""

from workers.encoders.base import BatchWriter, EncodeContext, WriterFactory
from workers.encoders.bundle import NdjsonWriter, NothingWriter
from workers.encoders.image import PngWriter
from workers.encoders.signal import WfdbWriter, asc_writer, csv_writer

ENCODERS: dict[str, WriterFactory] = {
    "wfdb": WfdbWriter,
    "csv": csv_writer,
    "asc": asc_writer,
    "npy": NothingWriter,
    "json": NdjsonWriter,
    "png": PngWriter,
}

__all__ = ["ENCODERS", "BatchWriter", "EncodeContext", "WriterFactory"]
