"""tl.dot for the kernels, with a work-around for Triton's CPU interpreter.

The interpreter (seen in triton 3.9) multiplies the raw uint16 bit patterns of bfloat16 operands, so there the
operands are widened to fp32 first: bf16 and fp16 products are exact in fp32, so results match a GPU's
fp32-accumulating tensor-core dot. Compiled kernels take the plain path.
"""

import os

import triton
import triton.language as tl

WIDEN_OPERANDS = tl.constexpr(os.environ.get("TRITON_INTERPRET") == "1")


@triton.jit
def tile_dot(a, b):
    """a @ b accumulated in fp32."""
    if WIDEN_OPERANDS:
        result = tl.dot(a.to(tl.float32), b.to(tl.float32))
    else:
        result = tl.dot(a, b)
    return result
