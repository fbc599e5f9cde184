"""The residual stream handed to the next block with that block's input RMSNorm half done.

A Mamba2 block's input norm costs a pass of its own each way: the forward reads the stream and writes the normed
copy in_proj reads, the backward reads in_proj's input gradient, the stream and the stream's own gradient and
writes their sum. Split across the GEMMs around it, no pass is left: the GEMM that writes the stream (the block
before's output projection) also writes it times the norm's weight and each row's rstd from its epilogue (quack's
`gemm_rms`); in_proj reads that and scales its rows by rstd in its epilogue (a row scale commutes through a
matmul). In the backward the kernels that write in_proj's output gradient scale its rows and sum what rstd's
gradient needs (norm_rows.py), and in_proj's input-gradient GEMM applies the norm's backward in its epilogue.
"""

from collections.abc import Callable
from typing import NamedTuple

import torch


class NormedStream(NamedTuple):
    stream: torch.Tensor
    """`[T, d]`, the residual stream: the only one of these that carries gradient (the block that reads the
    others runs the whole norm backward)"""
    weighted: torch.Tensor
    """`[T, d]`, stream * norm_weight in the stream's dtype"""
    rstd: torch.Tensor
    """`[T]` float32, 1 / sqrt(mean(stream^2) + eps), summed before the stream was rounded to its dtype"""
    norm_weight: torch.Tensor
    """the weight `weighted` was made with: the reading block checks it is its own norm's"""
    eps: float


def project_into_normed_stream(
    gemm_rms: Callable, x: torch.Tensor, weight: torch.Tensor, stream: torch.Tensor, norm_weight: torch.Tensor,
    eps: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(stream + x @ weight.T, that times norm_weight, its rows' rstd) from one quack GEMM."""
    out = torch.empty_like(stream)
    weighted, rstd = gemm_rms(
        x, weight.T, C=stream, norm_weight=norm_weight, premult_out=out, eps=eps, dynamic_scheduler=True
    )
    return out, weighted, rstd
