"""The standard 12-lead ECG printout (through matplotlib), one PDF or PNG page per ECG.

What a cardiologist expects at a glance: 25 mm/s and 10 mm/mV on a millimetre grid (1 mm minor, 5 mm major
lines), four columns of 2.5 s (I II III | aVR aVL aVF | V1 V2 V3 | V4 V5 V6, each from its own quarter of the
record), a 10-s lead II rhythm strip below, a 1 mV calibration pulse at the start of every row, and the
measurements in the header when the job measured them. Leads the sample does not hold (III, aVR, aVL, aVF of an
8-lead ECG) are computed from I and II by the output's own derivation (Einthoven, Goldberger).

One figure per writer: the grid, texts and lines are made once and each ECG only replaces the traces' data and
the header's text, which keeps a page at tens of milliseconds instead of hundreds."""

from __future__ import annotations

import functools
import io
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, PngImagePlugin

from deepsynthbody import __version__
from model_store.manifest import SignalOutput
from model_store.sizes import PRINTOUT_MAX_BYTES
from workers.encoders.base import EncodeContext
from workers.encoders.edf import scalar_measurements

MM = 1 / 25.4  # inches
PAGE = (297.0, 210.0)  # A4 landscape, mm
GRID_ORIGIN = (18.5, 14.0)  # the grid's lower left corner on the page, mm
GRID = (260.0, 165.0)  # mm: 10 mm for the calibration pulses, then 250 mm = 10 s at 25 mm/s
SPEED, GAIN = 25.0, 10.0  # mm/s, mm/mV
PULSE = (10.0, 5.0)  # calibration pulse: 1 mV (10 mm) high, 0.2 s (5 mm) wide
TRACE_X0 = 10.0  # where the traces start on the grid, mm
ROWS_Y = (138.0, 98.0, 58.0, 18.0)  # baselines of the three lead rows and the rhythm strip, mm from the grid's bottom
LAYOUT = [["I", "aVR", "V1", "V4"], ["II", "aVL", "V2", "V5"], ["III", "aVF", "V3", "V6"]]
RHYTHM = "II"
DPI = 150  # 5.9 pixels per millimetre: the 1 mm grid stays visible
MINOR, MAJOR, INK, TITLE = "#f6c8c8", "#e08080", "#000000", "#b00000"
STANDARD_LEADS = {name for row in LAYOUT for name in row}


def twelve_leads(sample: np.ndarray, names: list[str], output: SignalOutput) -> dict[str, np.ndarray]:
    """Every standard lead of a (time, channels) sample in uV: held ones as they are, the others derived."""
    held = {name: sample[:, k].astype(np.float32) for k, name in enumerate(names)}
    leads = dict(held)
    for derived in output.derived_channels:
        if derived.name not in leads and all(source in held for source in derived.weights):
            leads[derived.name] = sum(np.float32(w) * held[source] for source, w in derived.weights.items())
    missing = STANDARD_LEADS - set(leads)
    if missing:
        raise ValueError(f"a 12-lead printout needs leads {sorted(missing)}, which this output neither has nor derives")
    return leads


def _header_measurements(measured: dict[str, Any] | None) -> str:
    """The interpretation program's lines (GE MUSE's order), from what was measured; '--' where nothing was."""
    if not measured:
        return "Measurements: not requested (submit with \"annotate\": true)"
    values = {key: value for key, _, value, _ in scalar_measurements(measured)}

    def shown(key: str) -> str:
        return f"{values[key]:.0f}" if key in values else "--"

    return "\n".join([
        f"Vent. rate   {shown('heart_rate')} bpm",
        f"PR interval   {shown('pr_interval')} ms",
        f"QRS duration   {shown('qrs_duration')} ms",
        f"QT/QTc Bazett   {shown('qt_interval')}/{shown('qtc_bazett')} ms",
        f"P-R-T axes   {shown('p_axis')} {shown('qrs_axis')} {shown('t_axis')}",
    ])


def _palette() -> tuple[np.ndarray, np.ndarray]:
    """The colours a page has (ink, the title's red and the grid's two reds, each blended with white and with each
    other at antialiased edges) and, for every colour at 6 bits a channel, the index of the nearest of them. Fixed,
    so a page's bytes do not depend on which pages came before; 8-bit indices instead of RGB make PNGs 2.5x smaller
    and faster to write."""
    def rgb(colour: str) -> np.ndarray:
        return np.array([int(colour[k:k + 2], 16) for k in (1, 3, 5)], float)

    grounds = [rgb("#ffffff"), rgb(MINOR), rgb(MAJOR)]
    colours = [ground + (top - ground) * t for ground in grounds for top in (rgb(INK), rgb(TITLE), *grounds)
               for t in np.linspace(0, 1, 16)]
    palette = np.unique(np.rint(colours), axis=0)[:256]
    levels = np.arange(64) * 4 + 1.5  # the middle of each 6-bit bin; the cube's index is r | g << 6 | b << 12
    blue, green, red = np.meshgrid(levels, levels, levels, indexing="ij")
    cube = np.stack([red.ravel(), green.ravel(), blue.ravel()], 1).astype(np.float32)
    weights, norms = -2 * palette.T.astype(np.float32), (palette ** 2).sum(1).astype(np.float32)
    nearest = [(part @ weights + norms).argmin(1) for part in np.array_split(cube, 64)]  # |c - p|^2 less |c|^2
    return palette.astype(np.uint8), np.concatenate(nearest).astype(np.uint8)


@functools.cache
def _colours() -> tuple[np.ndarray, np.ndarray]:
    return _palette()


def _indexed(rgba: np.ndarray) -> Image.Image:
    """An (h, w, 4) page as a palette image of the page's colours."""
    palette, nearest = _colours()
    packed = rgba.view(np.uint32)[..., 0]  # r | g << 8 | b << 16 | a << 24 (little-endian)
    key = ((packed >> 2) & 0x3F) | ((packed >> 4) & 0xFC0) | ((packed >> 6) & 0x3F000)
    image = Image.fromarray(nearest[key], "P")
    image.putpalette(palette.ravel().tolist())
    return image


def _polyline(pieces: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(n, 2) pieces as one line's x and y, a NaN between pieces (no line drawn across)."""
    gap = np.full((1, 2), np.nan)
    joined = np.concatenate([part for piece in pieces for part in (piece, gap)][:-1])
    return joined[:, 0], joined[:, 1]


class Printout:
    """One page, reused: `render` sets one ECG's traces and header and returns the page's bytes."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.figure = Figure(figsize=(PAGE[0] * MM, PAGE[1] * MM), dpi=DPI)
        FigureCanvasAgg(self.figure)
        left, bottom = GRID_ORIGIN
        ax = self.figure.add_axes((left / PAGE[0], bottom / PAGE[1], GRID[0] / PAGE[0], GRID[1] / PAGE[1]))
        ax.set_xlim(0, GRID[0])
        ax.set_ylim(0, GRID[1])
        ax.set_axis_off()
        self.axes = ax
        self._grid()
        column_seconds = 2.5
        column_mm = column_seconds * SPEED
        self.segments: list[tuple[str, slice, float, float]] = []  # lead, samples, x0 mm, baseline mm
        for row, leads in enumerate(LAYOUT):
            for column, lead in enumerate(leads):
                x0 = TRACE_X0 + column * column_mm
                first = int(round(column * column_seconds * rate))
                self.segments.append((lead, slice(first, first + int(round(column_seconds * rate))), x0, ROWS_Y[row]))
                ax.text(x0 + 1.5, ROWS_Y[row] + 11, lead, fontsize=9, fontweight="bold", color=INK)
                if column:  # the short bar where one lead's quarter ends and the next begins
                    ax.plot([x0, x0], [ROWS_Y[row] - 3, ROWS_Y[row] + 3], color=INK, linewidth=0.8)
        self.segments.append((RHYTHM, slice(0, int(round(10 * rate))), TRACE_X0, ROWS_Y[3]))
        ax.text(TRACE_X0 + 1.5, ROWS_Y[3] + 11, RHYTHM, fontsize=9, fontweight="bold", color=INK)
        for baseline in ROWS_Y:  # calibration pulse: 1 mV for 0.2 s, on the row's baseline
            x, y = 2.0, baseline
            ax.plot([x, x + 1.5, x + 1.5, x + 1.5 + PULSE[1], x + 1.5 + PULSE[1], x + 3 + PULSE[1]],
                    [y, y, y + PULSE[0], y + PULSE[0], y, y], color=INK, linewidth=0.8)
        (self.traces,) = ax.plot([], [], color=INK, linewidth=0.6, solid_joinstyle="round")
        page = self.figure
        self.title = page.text(left / PAGE[0], 1 - 7 / PAGE[1], "", fontsize=11, fontweight="bold", color=TITLE,
                               va="top")
        self.identity = page.text(left / PAGE[0], 1 - 13 / PAGE[1], "", fontsize=8, va="top", linespacing=1.4)
        self.measured = page.text(0.52, 1 - 6 / PAGE[1], "", fontsize=8, va="top", family="monospace",
                                  linespacing=1.3)
        page.text(left / PAGE[0], 6 / PAGE[1], f"{SPEED:g} mm/s   {GAIN:g} mm/mV   {rate:g} Hz   "
                  "SYNTHETIC ECG: not a recording of a real person", fontsize=8, va="bottom")
        self.footer = page.text((left + GRID[0]) / PAGE[0], 6 / PAGE[1], "", fontsize=8, va="bottom", ha="right")
        self.changing = [self.title, self.identity, self.measured, self.footer]
        self.background: Any = None

    def _grid(self) -> None:
        """Minor and major lines, each colour one path (NaN between lines): far cheaper to draw than a collection."""
        width, height = GRID
        for step, colour, linewidth in ((1.0, MINOR, 0.3), (5.0, MAJOR, 0.6)):
            xs, ys = np.arange(0, width + 0.01, step), np.arange(0, height + 0.01, step)
            vertical = [(x, 0.0, x, height) for x in xs if step == 5 or x % 5]
            horizontal = [(0.0, y, width, y) for y in ys if step == 5 or y % 5]
            x, y = _polyline([np.array([[a, b], [c, d]]) for a, b, c, d in vertical + horizontal])
            self.axes.plot(x, y, color=colour, linewidth=linewidth, zorder=0, solid_capstyle="butt")

    def render(self, leads: dict[str, np.ndarray], title: str, identity: str, measured: str, footer: str,
               fmt: str, metadata: dict[str, str]) -> bytes:
        lines = []
        for lead, span, x0, baseline in self.segments:
            values = leads[lead][span]
            x = x0 + np.arange(len(values)) * (SPEED / self.rate)
            lines.append(np.column_stack([x, baseline + values * (GAIN / 1000.0)]))  # uV -> mm
        self.traces.set_data(*_polyline(lines))
        self.title.set_text(title)
        self.identity.set_text(identity)
        self.measured.set_text(measured)
        self.footer.set_text(footer)
        out = io.BytesIO()
        if fmt == "pdf":
            self.figure.savefig(out, format="pdf", metadata={**metadata, "CreationDate": None, "ModDate": None})
            return out.getvalue()
        canvas = self.figure.canvas
        if self.background is None:  # the page without what changes, drawn once
            self.traces.set_visible(False)
            for text in self.changing:
                text.set_visible(False)
            canvas.draw()
            self.background = canvas.copy_from_bbox(self.figure.bbox)
            self.traces.set_visible(True)
            for text in self.changing:
                text.set_visible(True)
        canvas.restore_region(self.background)
        self.axes.draw_artist(self.traces)
        for text in self.changing:
            self.figure.draw_artist(text)
        image = _indexed(np.asarray(canvas.buffer_rgba()))
        info = PngImagePlugin.PngInfo()
        for key, value in metadata.items():
            info.add_text(key, value)
        image.save(out, format="png", pnginfo=info, dpi=(DPI, DPI))
        return out.getvalue()


class PrintoutWriter:
    def __init__(self, ctx: EncodeContext, fmt: str) -> None:
        if not isinstance(ctx.output, SignalOutput):
            raise ValueError("printouts are of signals")
        self.ctx, self.fmt = ctx, fmt
        self.page = Printout(ctx.output.sampling_rate)

    def write(self, samples: np.ndarray, start: int) -> None:
        ctx = self.ctx
        for offset, sample in enumerate(samples):
            index = start + offset
            name = ctx.stem(index)
            leads = twelve_leads(sample, ctx.channel_names, ctx.output)
            metadata = {"Title": f"Synthetic 12-lead ECG {name}", "Author": "DeepSynthBody",
                        "Subject": ctx.synthetic,
                        "Keywords": f"synthetic ECG, {ctx.model_id}, version {ctx.model_version}",
                        "Creator": f"DeepSynthBody {__version__}"}
            data = self.page.render(
                leads,
                title="SYNTHETIC ECG - not a real person",
                identity=f"{name}   sample {index}, seed {ctx.seed}\nModel {ctx.model_id} version {ctx.model_version}"
                f"   DeepSynthBody {__version__}",
                measured=_header_measurements(ctx.measurements.get(index)),
                footer=f"{name}   {ctx.model_id} v{ctx.model_version}",
                fmt=self.fmt, metadata=metadata)
            if len(data) > PRINTOUT_MAX_BYTES:  # what the disk budget reserved for it (model_store/sizes.py)
                raise ValueError(f"the printout of sample {index} takes {len(data):,} bytes, more than the "
                                 f"{PRINTOUT_MAX_BYTES:,} a page may: no ECG's page comes near it")
            ctx.members.add(f"{name}.{self.fmt}", data)

