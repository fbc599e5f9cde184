"""2^x for a score tile on two hardware pipes at once.

At head dim 64 an H100 spends as long exponentiating a score tile as multiplying it: one ex2 per (query, key) pair
against 256 matmul FLOPs, and the special-function unit does 16 ex2 per clock per multiprocessor while the tensor
cores do ~4096 FLOPs. Half the columns therefore go through a polynomial on the FMA and integer pipes, which the
special-function unit does not use, so the two halves run side by side.
"""

import triton
import triton.language as tl

_ROUNDER = tl.constexpr(12582912.0)
"""1.5 * 2^23: adding it rounds a float of magnitude below 2^22 to an integer held in the low mantissa bits."""


@triton.jit
def exp2_fma(x):
    """2^x for x <= 0 without the special-function unit: 2^n * 2^f with n = round(x), f in [-1/2, 1/2], 2^f from a
    degree-3 fit (relative error below 8e-5, well under bf16's 4e-3), n added to the exponent bits. Below 2^-125
    the result is any value under 2^-125 (x = -inf included): the softmax sums it with 1 from the row's max."""
    x = tl.maximum(x, -125.0)
    shifted = x + _ROUNDER
    frac = x - (shifted - _ROUNDER)
    p = 0.0551716685295105 * frac + 0.2426111400127411
    p = p * frac + 0.6932609677314758
    p = p * frac + 0.9999280571937561
    bits = p.to(tl.int32, bitcast=True) + (shifted.to(tl.int32, bitcast=True) << 23)
    return bits.to(tl.float32, bitcast=True)


@triton.jit
def exp2_split(x):
    """2^x of a 2-d tile (x <= 0): even columns on the special-function unit, odd ones through exp2_fma. Adjacent
    columns sit in one thread's registers in the matmul accumulator layout, so the split moves no data (checked in
    the sm_90 code: no shuffle or shared-memory access is added)."""
    rows: tl.constexpr = x.shape[0]
    cols: tl.constexpr = x.shape[1]
    even, odd = tl.split(tl.reshape(x, [rows, cols // 2, 2]))
    return tl.reshape(tl.join(tl.math.exp2(even), exp2_fma(odd)), [rows, cols])
