"""Nearest-neighbour upsampling followed by a zero-padded convolution, computed without the upsampling.

Pulse2Pulse's decoder repeats every value s times (s = 5 or 2), pads with k//2 zeros and convolves with a
25-tap kernel. Output sample s*j + r (phase r) then reads input j + d for a handful of offsets d, each
through the sum of the kernel taps that land on the same repeated value:

    y[s*j + r] = sum_d W_r[d] * x[j + d],   W_r[d] = sum of w[k] over k with floor((r + k - pad) / s) = d

So one convolution over the input with s * out_channels output channels (the s phases' summed kernels, 6-7
taps for s = 5, 13 for s = 2) followed by interleaving the phases computes the same layer with about a
quarter to a half of the multiply-adds, and the whole generator with 0.25 instead of 0.63 GFLOP per ECG.
It is the same function in exact arithmetic; in float32 only the order of additions changes (the summed
kernels are formed in float64 and rounded once).
"""

from __future__ import annotations

import math
from typing import Any


def polyphase(conv: Any, factor: int, pad: int) -> Any:  # torch.nn.Conv1d -> torch.nn.Module
    """A module equal to conv1d(zero_pad(upsample_nearest(x, factor), pad)) for `conv` (stride 1, no padding of
    its own, an odd number of taps, pad = taps // 2: the output is as long as the upsampled input)."""
    import torch
    import torch.nn.functional as F

    if conv.stride != (1,) or conv.padding != (0,) or conv.dilation != (1,) or conv.groups != 1:
        raise ValueError("polyphase form needs a plain stride-1 convolution without its own padding")
    weight = conv.weight.detach().double()  # (out, in, taps)
    out_channels, in_channels, taps = weight.shape
    if 2 * pad != taps - 1:
        raise ValueError(f"polyphase form covers length-preserving padding: {taps} taps need pad {(taps - 1) / 2}")
    first = math.floor(-pad / factor)  # the lowest input offset any phase reads
    last = math.floor((factor - 1 + taps - 1 - pad) / factor)
    phases = torch.zeros(factor, out_channels, in_channels, last - first + 1, dtype=torch.float64)
    for phase in range(factor):
        for tap in range(taps):
            phases[phase, :, :, math.floor((phase + tap - pad) / factor) - first] += weight[:, :, tap]

    class Polyphase(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("weight", phases.reshape(factor * out_channels, in_channels, -1).float())
            self.register_buffer("bias", conv.bias.detach().repeat(factor) if conv.bias is not None else None)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            batch, _, length = x.shape
            y = F.conv1d(F.pad(x, (-first, last)), self.weight, self.bias)  # (batch, factor*out, length)
            return y.reshape(batch, factor, out_channels, length).permute(0, 2, 3, 1).reshape(
                batch, out_channels, length * factor)

    return Polyphase()
