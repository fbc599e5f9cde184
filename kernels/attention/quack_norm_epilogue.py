"""The RMSNorm backward in the epilogue of the GEMM that hands back the gradient of a normed qkv projection's input.

The forward scaled the projection's rows by the norm's rstd in its epilogue and took the norm's weight into the
projection's weight, so that GEMM (d(unscaled qkv) @ weight) gives the stream's gradient through the weighted
input directly; the epilogue adds the stream's own gradient and the stream times each row's rstd correction. Importing
this module imports quack; it is imported only where quack is known to import. The EpiMod sits at module level
because quack re-mints its compiled kernels by importing it.
"""

from quack.epilogue.frontend import gemm_epilogue
from quack.epilogue.ops import ColVecLoad


@gemm_epilogue(ops={"corr": ColVecLoad("corr")})
def stream_grad_epilogue(acc, c, y, corr):
    """acc: the gradient through the projection; c: the stream's own gradient; y: the stream; corr: each row's
    rstd correction -> {"D": the stream's whole gradient}."""
    return {"D": acc + c + y * corr}
