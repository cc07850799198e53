"""Encoders by format name; which formats a model offers comes from its manifest."""

from workers.encoders.base import BatchWriter, EncodeContext, WriterFactory
from workers.encoders.bundle import NdjsonWriter, NothingWriter
from workers.encoders.dicom import DicomWriter
from workers.encoders.edf import EdfWriter
from workers.encoders.image import PngWriter
from workers.encoders.printout import pdf_writer, png_printout
from workers.encoders.signal import WfdbWriter, asc_writer, csv_writer


def _png(ctx: EncodeContext) -> BatchWriter:
    """An image's PNG is the image; a signal's is its printout."""
    return PngWriter(ctx) if ctx.output.kind == "image" else png_printout(ctx)


ENCODERS: dict[str, WriterFactory] = {
    "wfdb": WfdbWriter,
    "csv": csv_writer,
    "asc": asc_writer,
    "npy": NothingWriter,
    "json": NdjsonWriter,
    "png": _png,
    "edf": EdfWriter,
    "dicom": DicomWriter,
    "pdf": pdf_writer,
}

__all__ = ["ENCODERS", "BatchWriter", "EncodeContext", "WriterFactory"]
