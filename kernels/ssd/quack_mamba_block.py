"""The Mamba2 block on quack's GEMMs with its input RMSNorm folded into them (fused/normed_stream.py).

in_proj reads the stream times the norm's weight and scales its rows by rstd in its epilogue; the mixer core runs
as it does alone (mixer.py); out_proj adds into the stream in its epilogue and, before another Mamba2 block, also
writes that block's weighted stream and rstd. Backward: out_proj's input gradient on quack; the core's backward
with the rows of zxbcdt's gradient scaled by rstd and each row's gradient times zxbcdt summed on the way
(fused/norm_rows.py); in_proj's weight gradient on cuBLAS (faster there, bench/results/fused.md run 10); its input
gradient on quack with the norm's backward in the epilogue (quack's `rms_bwd_apply_epi`: times the norm's weight,
plus the stream's own gradient, plus the stream times each row's correction, and the norm weight's gradient as
column sums). Against the unfused block no norm pass is left, nor the normed copy and its gradient in memory.
"""

import functools
from collections.abc import Callable
from typing import NamedTuple

import torch

from gristmill.kernels.fused.norm_rows import NormRows
from gristmill.kernels.fused.normed_stream import NormedStream, project_into_normed_stream
from gristmill.kernels.fused.quack_projection import QuackProjectionFailed
from gristmill.kernels.fused.quack_support import (
    FailureRecord, compute_dtype, half_precision_hopper_reason, import_quack,
)
from gristmill.kernels.fused.rms_norm.triton_fwd_bwd import rms_norm_fwd
from gristmill.kernels.ssd.mixer import CoreParameters, contiguous_parameters, core_backward, core_forward, core_plan

_failures = FailureRecord(QuackProjectionFailed)


class _QuackGEMMs(NamedTuple):
    gemm: Callable
    gemm_add: Callable
    gemm_rms: Callable
    gemm_norm_act: Callable
    """A, B, rstd, postact_out -> (A @ B) * rstd per row, into postact_out"""
    norm_grad_apply: Callable
    """A, B, C, y, w, corr -> {"D": (A @ B) * w + C + y * corr, "dw": column sums of (A @ B) * y}"""


@functools.cache
def _quack_gemms() -> tuple[_QuackGEMMs | None, str | None]:
    found, reason = import_quack(
        "Mamba2 blocks: the input norm folded into quack's in_proj and out_proj GEMMs",
        "quack.gemm_interface:gemm", "quack.gemm_interface:gemm_add", "quack.gemm_interface:gemm_rms",
        "quack.gemm_interface:gemm_norm_act", "quack.epilogue.library:rms_bwd_apply_epi",
    )
    return (None if found is None else _QuackGEMMs(*found)), reason


class _NormedMambaBlock(torch.autograd.Function):
    @staticmethod
    def forward(ctx, stream, weighted, rstd, norm_weight, w_in, w_out, zxbcdt, next_norm, plan, gemms, *core):
        gemms.gemm_norm_act(weighted, w_in.T, rstd=rstd, postact_out=zxbcdt, dynamic_scheduler=True)
        core_out, saved = core_forward(zxbcdt, CoreParameters(*core), plan)
        ctx.save_for_backward(stream, weighted, rstd, norm_weight, w_in, w_out, zxbcdt, core_out, *core, *saved)
        ctx.plan, ctx.gemms = plan, gemms
        if next_norm is None:
            return gemms.gemm_add(core_out, w_out.T, stream, dynamic_scheduler=True)
        out, out_weighted, out_rstd = project_into_normed_stream(gemms.gemm_rms, core_out, w_out, stream, *next_norm)
        ctx.mark_non_differentiable(out_weighted, out_rstd)
        return out, out_weighted, out_rstd

    @staticmethod
    def backward(ctx, dout, *_):  # the next block's weighted stream and rstd are statistics of the output
        stream, weighted, rstd, norm_weight, w_in, w_out, zxbcdt, core_out, *rest = ctx.saved_tensors
        core = CoreParameters(*rest[: len(CoreParameters._fields)])
        gemms: _QuackGEMMs = ctx.gemms
        dout = dout if dout.stride(-1) == 1 else dout.contiguous()
        dcore = gemms.gemm(dout, w_out, dynamic_scheduler=True)
        dw_out = dout.T @ core_out
        rows = NormRows(rstd, torch.empty_like(rstd))
        grad, dcore_params = core_backward(dcore, zxbcdt, core, rest[len(core) :], ctx.plan, grad_rows=rows)
        dw_in = grad.T @ weighted  # grad's rows carry rstd: the gradient of the unscaled product
        correction = rstd.square().mul_(rows.dots).mul_(-1.0 / stream.shape[-1])
        applied = gemms.norm_grad_apply(grad, w_in, dout, y=stream, w=norm_weight, corr=correction,
                                        out={"D": torch.empty_like(stream)}, dynamic_scheduler=True)
        dnorm_weight = applied["dw"].to(norm_weight.dtype)
        return applied["D"], None, None, dnorm_weight, dw_in, dw_out, None, None, None, None, *dcore_params


def normed_mamba_block_unavailable_reason(stream: torch.Tensor, w_in: torch.Tensor, w_out: torch.Tensor) -> str | None:
    """None when `normed_mamba_block` can run these inputs, else why not (the caller runs the block unfused)."""
    if (earlier := _failures.earlier()) is not None:
        return earlier
    if stream.dim() != 2 or w_in.dim() != 2 or w_out.dim() != 2 or w_in.shape[1] != stream.shape[1]:
        return f"stream {tuple(stream.shape)}, w_in {tuple(w_in.shape)} are not a [T, d] stream and an [n, d] weight"
    if w_out.shape[0] != stream.shape[1]:
        return f"w_out {tuple(w_out.shape)} does not project back to the stream's width {stream.shape[1]}"
    if any(width % 8 for width in (*w_in.shape, w_out.shape[1])):
        return f"the projections' widths ({tuple(w_in.shape)}, {tuple(w_out.shape)}) must be multiples of 8 for quack"
    return half_precision_hopper_reason(stream, "quack's Mamba2 projections") or _quack_gemms()[1]


def normed_mamba_block(
    stream: torch.Tensor | NormedStream,
    norm_weight: torch.Tensor,
    eps: float,
    w_in: torch.Tensor,
    core: CoreParameters,
    core_eps: float,
    w_out: torch.Tensor,
    *,
    groups: int,
    chunk_size: int,
    cu_seqlens: torch.Tensor | None,
    next_norm: tuple[torch.Tensor, float] | None = None,
) -> torch.Tensor | NormedStream:
    """stream + out_proj(mamba_mixer_core(in_proj(rmsnorm(stream) * norm_weight))), differentiable in the stream and
    every weight; check `normed_mamba_block_unavailable_reason` first. A `NormedStream` (from the GEMM that wrote the
    stream) must come from this norm's weight and eps; a plain stream gets its weighted copy and rstd here.
    `next_norm` (the next Mamba2 block's norm weight and eps) returns the output as a `NormedStream` for it. Under
    autocast the matmul operands are cast as a matmul would cast them. A failure inside quack raises
    `QuackProjectionFailed` and makes every later availability check name it."""
    gemms, reason = _quack_gemms()
    if gemms is None:
        raise ValueError(f"normed_mamba_block needs quack-kernels: {reason}")
    if isinstance(stream, NormedStream):
        if stream.norm_weight is not norm_weight or stream.eps != eps:
            raise ValueError("normed_mamba_block: the NormedStream was made for another norm")
        stream, weighted, rstd = stream.stream, stream.weighted, stream.rstd
    else:
        stream = stream.to(compute_dtype(stream))
        weighted, _, rstd = rms_norm_fwd(stream.contiguous(), norm_weight, eps, apply_rstd=False)
    w_in, w_out = w_in.to(stream.dtype), w_out.to(stream.dtype)
    zxbcdt = torch.empty(stream.shape[0], w_in.shape[0], device=stream.device, dtype=stream.dtype)
    plan = core_plan(zxbcdt, core, core_eps, groups, chunk_size, cu_seqlens)
    with torch.autocast("cuda", enabled=False):
        out = _failures.call(
            _NormedMambaBlock.apply, stream, weighted, rstd, norm_weight, w_in, w_out, zxbcdt, next_norm, plan, gemms,
            *contiguous_parameters(core),
        )  # fmt: skip
    return out if next_norm is None else NormedStream(*out, *next_norm)
