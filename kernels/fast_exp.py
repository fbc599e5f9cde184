"""exp for Triton kernels as one ex2.approx.ftz.f32 after a multiply by log2(e).

`tl.exp` on fp32 lowers to ex2.approx.f32 (without ftz), which ptxas guards against denormal results with a
compare and two predicated multiplies: five sm_90 instructions per element where this takes two (triton 3.6).
Results differ only where exp(x) < 2^-126, which flushes to zero here instead of a denormal: no decay or
probability that small changes a bf16 product or an fp32 sum the kernels form. The SSD walks and gradients take
it for their decay tiles (scan fwd+bwd 1.06x, bench/results/ssd.md run 16); the chunk cumsum keeps tl.exp, whose
softplus stays exact down to denormals and whose kernels did not get faster with it.
"""

import triton
import triton.language as tl

LOG2E = 1.4426950408889634
"""log2(e): host code folds it into a kernel's scale (the attention kernels exponentiate in base 2 throughout)."""
_LOG2E = tl.constexpr(LOG2E)


@triton.jit
def exp_ftz(x):
    return tl.math.exp2(x * _LOG2E)
