"""The residual stream handed from one block to the next with its next RMSNorm half done.

An attention block's input norm costs a pass of its own each way: the forward reads the stream and writes the normed
copy the qkv projection reads, the backward reads that projection's input gradient, the stream and the stream's own
gradient and writes the sum. Split across the two GEMMs around it, the norm has no pass left: the GEMM that writes
the stream (the previous block's MLP down projection) also sums each row's squares in its epilogue and hands back
rstd; the qkv projection reads the stream as it is, through a weight with the norm's weight folded into its columns
(a row scale of the input commutes through a matmul, so rstd goes into its epilogue too). Its backward applies the
norm's backward in the epilogue of its input-gradient GEMM. Only `stream` carries gradient: rstd is a statistic of
it, and the op that reads both does the whole norm backward.
"""

from typing import NamedTuple

import torch


class NormedStream(NamedTuple):
    stream: torch.Tensor
    """`[T, d]`, the residual stream"""
    rstd: torch.Tensor
    """`[T]` float32, 1 / sqrt(mean(stream^2) + eps) of each row, summed from the stream before it was rounded"""
    eps: float
