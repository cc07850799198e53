"""The GPU path's CUDA sources, compiled as C here, give the CPU path's noise and int16 samples bit for bit.

The kernels use only arithmetic C has (64-bit multiplies, shifts, IEEE float32 with no contraction), so
the same source built by gcc with a few intrinsics spelled in C checks the algorithm on any machine;
`deepsynthbody bench-gpu` checks the same identities on a real GPU.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from model_store.manifest import SignalOutput
from model_store.recipes.pulse2pulse_ecg import MANIFEST_TEMPLATE
from workers import postprocess
from workers.cuda_kernels import PHILOX_UNIFORM, SIGNAL_KERNEL, signal_kernel_source
from workers.noise import sample_generator

CUDA_IN_C = r"""
#include <math.h>
typedef struct { long long x; } dim3_t;
static dim3_t blockIdx, blockDim = {1}, threadIdx = {0};
#define __global__
static unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
    return (unsigned long long)(((unsigned __int128)a * b) >> 64);
}
static float __fmul_rn(float a, float b) { return a * b; }
static float __fadd_rn(float a, float b) { return a + b; }
static float __int_as_float(int i) { union { int i; float f; } u; u.i = i; return u.f; }
"""

SPEC = SignalOutput.model_validate(MANIFEST_TEMPLATE["output"])


def _compile(tmp_path: Path, name: str, kernel: str, kernel_name: str, signature: str, arguments: str) -> ctypes.CDLL:
    compiler = shutil.which("cc") or shutil.which("gcc")
    assert compiler, "a C compiler is needed to check the CUDA kernels' sources (.ci/run installs gcc)"
    source = CUDA_IN_C + kernel.replace('extern "C"', "") + f"""
void launch({signature}, long long threads) {{
    for (long long t = 0; t < threads; ++t) {{ blockIdx.x = t; {kernel_name}({arguments}); }}
}}
"""
    (tmp_path / f"{name}.c").write_text(source)
    library = tmp_path / f"{name}.so"
    subprocess.run([compiler, "-O2", "-ffp-contract=off", "-shared", "-fPIC", "-o", str(library),
                    str(tmp_path / f"{name}.c"), "-lm"], check=True)
    return ctypes.CDLL(str(library))


@pytest.fixture(scope="module")
def philox(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    signature = ("float* out, unsigned long long seed, unsigned long long first, int count, long long per_sample, "
                 "long long offset, float span, float low")
    return _compile(tmp_path_factory.mktemp("philox"), "philox", PHILOX_UNIFORM, "philox_uniform", signature,
                    "out, seed, first, count, per_sample, offset, span, low")


def _draw(library: ctypes.CDLL, seed: int, first: int, count: int, per_sample: int, offset: int,
          low: float, high: float) -> np.ndarray:
    out = np.full((count, per_sample), np.nan, dtype=np.float32)
    blocks = ((offset + per_sample - 1) >> 3) - (offset >> 3) + 1
    library.launch(out.ctypes.data_as(ctypes.c_void_p), ctypes.c_ulonglong(seed), ctypes.c_ulonglong(first),
                   ctypes.c_int(count), ctypes.c_longlong(per_sample), ctypes.c_longlong(offset),
                   ctypes.c_float(high - low), ctypes.c_float(low), ctypes.c_longlong(blocks * count))
    return out


@pytest.mark.parametrize(("seed", "first"), [(0, 0), (2024, 5), (2**64 - 1, 2**40), (123456789, 999_999)])
def test_philox_kernel_draws_numpys_noise(philox: ctypes.CDLL, seed: int, first: int) -> None:
    gpu = _draw(philox, seed, first, 3, 8 * 5000, 0, -1.0, 1.0)
    cpu = np.empty_like(gpu)
    for sample in range(3):
        sample_generator(seed, first + sample).random(out=cpu[sample], dtype=np.float32)
        cpu[sample] *= 2.0
        cpu[sample] += -1.0
    assert np.array_equal(gpu.view(np.uint32), cpu.view(np.uint32))


def test_a_second_input_continues_the_samples_stream(philox: ctypes.CDLL) -> None:
    """Inputs are drawn in manifest order from one stream per sample; odd sizes cross Philox blocks."""
    gpu = _draw(philox, 7, 3, 2, 21, 13, 0.5, 3.5)
    cpu = np.empty((2, 21), dtype=np.float32)
    for sample in range(2):
        rng = sample_generator(7, 3 + sample)
        rng.random(13, dtype=np.float32)
        rng.random(out=cpu[sample], dtype=np.float32)
        cpu[sample] *= 3.0
        cpu[sample] += 0.5
    assert np.array_equal(gpu.view(np.uint32), cpu.view(np.uint32))


@pytest.mark.parametrize("leads", [8, 12])
def test_int16_kernel_matches_postprocess(tmp_path: Path, leads: int) -> None:
    names = SPEC.channel_names({"leads": leads})
    library = _compile(tmp_path, f"signal{leads}", signal_kernel_source(SPEC, names), SIGNAL_KERNEL,
                       "const float* raw, short* out, int batch", "raw, out, batch")
    raw = np.tanh(2 * np.random.default_rng(leads).standard_normal((5, 8, 5000))).astype(np.float32)
    raw[0, 0, :6] = [1.0, -1.0, 0.5 / 6000, 1.5 / 6000, -2.5 / 6000, 0.0]  # extremes and round-half-even ties
    out = np.full((5, 5000, leads), 12345, dtype=np.int16)
    library.launch(raw.ctypes.data_as(ctypes.c_void_p), out.ctypes.data_as(ctypes.c_void_p), ctypes.c_int(5),
                   ctypes.c_longlong(5 * 5000))
    assert np.array_equal(out, postprocess.signal_samples(raw, SPEC, {"leads": leads}))
