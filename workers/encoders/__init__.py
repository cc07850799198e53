"""Encoders by format name; which formats a model offers comes from its manifest."""

from workers.encoders.base import BatchWriter, EncodeContext, WriterFactory
from workers.encoders.bundle import NdjsonWriter, NothingWriter
from workers.encoders.image import PngWriter
from workers.encoders.signal import WfdbWriter, asc_writer, csv_writer

# The hospital formats' libraries (pyedflib, pydicom, matplotlib) load when a job first asks for them: the API
# imports this package for the stream's records and needs none of them.


def _edf(ctx: EncodeContext) -> BatchWriter:
    from workers.encoders.edf import EdfWriter

    return EdfWriter(ctx)


def _dicom(ctx: EncodeContext) -> BatchWriter:
    from workers.encoders.dicom import DicomWriter

    return DicomWriter(ctx)


def _pdf(ctx: EncodeContext) -> BatchWriter:
    from workers.encoders.printout import PrintoutWriter

    return PrintoutWriter(ctx, "pdf")


def _png(ctx: EncodeContext) -> BatchWriter:
    """An image's PNG is the image; a signal's is its printout."""
    if ctx.output.kind == "image":
        return PngWriter(ctx)
    from workers.encoders.printout import PrintoutWriter

    return PrintoutWriter(ctx, "png")


ENCODERS: dict[str, WriterFactory] = {
    "wfdb": WfdbWriter,
    "csv": csv_writer,
    "asc": asc_writer,
    "npy": NothingWriter,
    "json": NdjsonWriter,
    "png": _png,
    "edf": _edf,
    "dicom": _dicom,
    "pdf": _pdf,
}

__all__ = ["ENCODERS", "BatchWriter", "EncodeContext", "WriterFactory"]
