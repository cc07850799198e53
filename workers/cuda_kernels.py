"""CUDA C sources for the GPU path: the same noise and the same int16 samples as the CPU path, bit for bit.

`PHILOX_UNIFORM` reproduces numpy's `Generator(Philox(key=seed | index << 64)).random(dtype=float32)`:
Philox4x64-10 (Salmon et al., SC'11) on counters 1, 2, 3, ... (numpy increments before each block),
each 64-bit word split low half first, and a float from the top 24 bits of each 32-bit half. The affine
map to [low, high) is the same float32 multiply then add as `workers.noise.draw`, with contraction into
an FMA ruled out (`__fmul_rn`, `__fadd_rn`), so CPU and GPU workers draw identical noise.

`signal_kernel_source` writes the float32 arithmetic of `workers.postprocess.signal_samples` for one
output's channel list: the same products and sums in the same order, then round-half-even and clip.
"""

from __future__ import annotations

import numpy as np

from model_store.manifest import SignalOutput

PHILOX_UNIFORM = r"""
#define PHILOX_M0 0xD2E7470EE14C6C93ULL
#define PHILOX_M1 0xCA5A826395121157ULL
#define PHILOX_W0 0x9E3779B97F4A7C15ULL
#define PHILOX_W1 0xBB67AE8584CAA73BULL

extern "C" __global__ void philox_uniform(
    float* out,                      // (count, per_sample) floats, sample-major
    unsigned long long seed,         // key word 0
    unsigned long long first_index,  // key word 1 of the first sample: the sample's index in the request
    int count,                       // samples in this batch
    long long per_sample,            // floats of this input per sample
    long long offset,                // floats drawn from the sample's stream before this input
    float span, float low)
{
    long long first_block = offset >> 3;
    long long blocks = ((offset + per_sample - 1) >> 3) - first_block + 1;
    long long tid = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (tid >= blocks * count) return;
    int sample = (int)(tid / blocks);
    long long block = first_block + tid % blocks;

    unsigned long long c0 = (unsigned long long)block + 1ULL, c1 = 0, c2 = 0, c3 = 0;
    unsigned long long k0 = seed, k1 = first_index + (unsigned long long)sample;
    #pragma unroll
    for (int round = 0; round < 10; ++round) {
        if (round) { k0 += PHILOX_W0; k1 += PHILOX_W1; }
        unsigned long long hi0 = __umul64hi(PHILOX_M0, c0), lo0 = PHILOX_M0 * c0;
        unsigned long long hi1 = __umul64hi(PHILOX_M1, c2), lo1 = PHILOX_M1 * c2;
        c0 = hi1 ^ c1 ^ k0; c1 = lo1; c2 = hi0 ^ c3 ^ k1; c3 = lo0;
    }
    unsigned long long words[4] = {c0, c1, c2, c3};
    float* row = out + (long long)sample * per_sample;
    #pragma unroll
    for (int j = 0; j < 8; ++j) {
        long long position = block * 8 + j - offset;
        if (position < 0 || position >= per_sample) continue;
        unsigned int bits = (j & 1) ? (unsigned int)(words[j >> 1] >> 32) : (unsigned int)words[j >> 1];
        float unit = (float)(bits >> 8) * (1.0f / 16777216.0f);
        row[position] = __fadd_rn(__fmul_rn(unit, span), low);
    }
}
"""

SIGNAL_KERNEL = "signal_to_int16"


def _f32(value: float) -> str:
    """An exact float32 literal: the bits of np.float32(value)."""
    return f"__int_as_float({int(np.float32(value).view(np.int32))})"


def signal_kernel_source(spec: SignalOutput, names: list[str]) -> str:
    """(batch, base channels, length) float32 -> (batch, length, len(names)) int16, one thread per time step."""
    index = {name: i for i, name in enumerate(spec.channels)}
    derived = {d.name: d.weights for d in spec.derived_channels}
    length, base = spec.length, len(spec.channels)
    lines = []
    for i in range(base):
        lines.append(f"    float b{i} = __fmul_rn(r[{i * length}LL], {_f32(spec.scale)});")
    for column, name in enumerate(names):
        if name in index:
            value = f"b{index[name]}"
        else:
            terms = [f"__fmul_rn({_f32(w)}, b{index[src]})" for src, w in derived[name].items()]
            value = terms[0]
            for term in terms[1:]:
                value = f"__fadd_rn({value}, {term})"
        lines.append(f"    o[{column}] = (short)fminf(fmaxf(rintf({value}), -32768.0f), 32767.0f);")
    body = "\n".join(lines)
    return f"""
extern "C" __global__ void {SIGNAL_KERNEL}(const float* raw, short* out, int batch)
{{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)batch * {length}) return;
    long long sample = i / {length}, t = i % {length};
    const float* r = raw + sample * {base * length}LL + t;
    short* o = out + i * {len(names)};
{body}
}}
"""
