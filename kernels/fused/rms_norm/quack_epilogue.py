"""An RMSNorm's backward as a quack GEMM epilogue, for a norm whose weight is folded into the GEMM's weight.

With y = rstd * x the unweighted norm, and the GEMM after it fed x with rstd applied in its epilogue, its
input-gradient GEMM hands back acc = rstd * dy-side product (the gradient of x that holds rstd fixed). The norm's
backward adds rstd's own gradient, x * corr with corr = -rstd^2 / d * sum(dy * y) per row, and the stream's other
gradient c; corr comes from the kernel that had dy beside y. Importing this module imports quack; it is imported
only where quack is known to import. The EpiMod sits at module level because quack re-mints its compiled kernels by
importing it.
"""

from quack.epilogue.frontend import gemm_epilogue
from quack.epilogue.ops import ColVecLoad


@gemm_epilogue(ops={"corr": ColVecLoad("corr")})
def norm_grad_apply_epilogue(acc, c, x, corr):
    """acc: the GEMM's product; c: the stream's other gradient; x: the norm's input; corr: per row."""
    return {"D": acc + c + x * corr}
