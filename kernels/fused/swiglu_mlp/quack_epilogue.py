"""The SwiGLU gradient as a quack GEMM epilogue that writes d(gate, up) only.

quack's `gemm_dgated` also writes the activation it recomputes from the pre-activation, for w_down's gradient. The
MLP keeps the forward's activation instead, so this epilogue leaves that store out: per tile it reads the packed
(gate, up) pre-activation and writes the packed gradient, a fifth less epilogue traffic in a GEMM that is bound by
that traffic (dA at d1024/F2752 runs at ~420 TFLOP/s with the store). Importing this module imports quack; it is
imported only where quack is known to import. The EpiMod sits at module level because quack re-mints its compiled
kernels by importing it.
"""

from quack.activation import dswiglu
from quack.epilogue.frontend import gemm_epilogue
from quack.epilogue.math import pack, unpack
from quack.epilogue.ops import ColVecLoad, ColVecReduce


@gemm_epilogue(mode="packed_cd_b16x2")
def swiglu_grad_epilogue(acc, c):
    """acc: d(activation) of one (gate, up) pair; c: that pair's pre-activation -> {"D": d(gate, up)}."""
    gate, up = unpack(c)
    dgate, dup, _ = dswiglu(gate, up, acc)
    return {"D": pack(dgate, dup)}


@gemm_epilogue(ops={"rstd": ColVecLoad("rstd")}, reduces={"dsum": ColVecReduce("dsum")}, mode="packed_cd_b16x2")
def swiglu_grad_rstd_epilogue(acc, c, rstd):
    """The same gradient times the row's rstd, for an MLP whose input GEMM applied the norm's rstd in its epilogue:
    the result is the gradient of the unscaled pre-activation, which both backward GEMMs of that input take as is.
    dsum, each row's sum of d(pre-activation) * pre-activation, is the gradient of rstd times rstd: the norm's
    backward needs no pass of its own to form it."""
    gate, up = unpack(c)
    dgate, dup, _ = dswiglu(gate, up, acc)
    return {"D": pack(dgate * rstd, dup * rstd), "dsum": dgate * gate + dup * up}
