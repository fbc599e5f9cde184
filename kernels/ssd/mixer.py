"""The Mamba2 mixer core as one autograd function over the in_proj output, on CUDA or the interpreter.

Unfused, the mixer copies xBC out of the projection, copies x, B and C out of the conv output, writes the gated
scan output silu(z) * y for the norm to read back, and its backward concatenates dz, dxBC and ddt (and dx, dB,
dC) back together. Here the conv reads xBC in place from `zxbcdt`, the scan reads x, B and C in place from the
conv output, the gated RMSNorm reads y and z (in place) and writes the normed output, and the backward writes dz,
dxBC and ddt straight into one gradient shaped like `zxbcdt`: the gated norm's backward and the conv backward
write into its column slices, the scan backward into slices of the conv output's gradient.
"""

from typing import NamedTuple

import torch

from gristmill.kernels.fused.launch import check_triton_device
from gristmill.kernels.fused.norm_rows import NormRows
from gristmill.kernels.fused.rms_norm.triton_fwd_bwd import rms_norm_bwd, rms_norm_fwd
from gristmill.kernels.ssd.conv1d import conv1d_bwd, conv1d_fwd
from gristmill.kernels.ssd.conv1d_reference import check_conv1d_inputs
from gristmill.kernels.ssd.documents import ChunkPlan, stream_chunk_plan, stream_doc_start
from gristmill.kernels.ssd.function import ScanInputs, ScanIntermediates, ssd_backward, ssd_forward
from gristmill.kernels.ssd.layout import empty_rows_like, rows_in_place
from gristmill.kernels.ssd.mixer_reference import MixerLayout, check_gated_norm, mixer_layout
from gristmill.kernels.ssd.validation import check_ssd_inputs


class CoreParameters(NamedTuple):
    """The mixer core's own parameters, as `mamba_mixer_core` takes them."""

    conv_weight: torch.Tensor
    conv_bias: torch.Tensor | None
    dt_bias: torch.Tensor
    A_log: torch.Tensor
    D: torch.Tensor | None
    norm_weight: torch.Tensor


class CorePlan(NamedTuple):
    """What the core needs besides tensors that carry gradient: the column layout, the gated norm's eps, each
    token's document start (for the conv) and the scan's chunk plan."""

    layout: MixerLayout
    eps: float
    doc_start: torch.Tensor
    chunks: ChunkPlan


def core_forward(
    zxbcdt: torch.Tensor, params: CoreParameters, plan: CorePlan
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The normed output, and the tensors `core_backward` needs (after zxbcdt and the parameters)."""
    layout = plan.layout
    z, xbc, dt_raw = layout.split_projection(zxbcdt)
    conv_out = conv1d_fwd(xbc, params.conv_weight, params.conv_bias, plan.doc_start, silu=True)
    x, B, C = layout.split_conv(conv_out)
    scan_inputs = ScanInputs(x, dt_raw, params.A_log, B, C, params.D, params.dt_bias)
    y, _, saved = ssd_forward(scan_inputs, None, plan.chunks, keep_final_state=False)
    y = y.view(z.shape)
    normed, _, rstd = rms_norm_fwd(y, params.norm_weight, plan.eps, gate=z)
    return normed, [conv_out, y, rstd, *saved]


def core_backward(
    dnormed: torch.Tensor,
    zxbcdt: torch.Tensor,
    params: CoreParameters,
    saved: list[torch.Tensor],
    plan: CorePlan,
    grad_rows: NormRows | None = None,
) -> tuple[torch.Tensor, CoreParameters]:
    """zxbcdt's gradient, one tensor of its shape, and the parameters' gradients. With `grad_rows` (a norm
    deferred into the projection before the core, fused/norm_rows.py) the gradient's rows come out scaled and
    the dots hold each row's sum of the unscaled gradient times zxbcdt: the gated norm's backward writes the
    z columns' share, the scan's dt kernel and the conv backward add theirs."""
    conv_out, y, rstd, *scan_saved = saved
    layout = plan.layout
    grad = empty_rows_like(zxbcdt)
    z, xbc, dt_raw = layout.split_projection(zxbcdt)
    dz, dxbc, ddt_raw = layout.split_projection(grad)
    dy = torch.empty_like(y)
    dnorm_weight = rms_norm_bwd(
        dnormed.contiguous(), y, params.norm_weight, rstd, dy, gate=z, dgate=dz, dgate_rows=grad_rows
    )
    dconv_out = torch.empty_like(conv_out)
    x, B, C = layout.split_conv(conv_out)
    _, dA_log, dD, _, ddt_bias = ssd_backward(
        ScanInputs(x, dt_raw, params.A_log, B, C, params.D, params.dt_bias), ScanIntermediates(*scan_saved),
        dy.view(x.shape), None, plan.chunks, layout.split_conv(dconv_out), keep_initial_gradient=False, ddt=ddt_raw,
        ddt_rows=grad_rows,
    )  # fmt: skip
    dweight, dbias = conv1d_bwd(
        xbc, params.conv_weight, params.conv_bias, plan.doc_start, dconv_out, silu=True, dx=dxbc, dx_rows=grad_rows
    )
    return grad, CoreParameters(dweight, dbias, ddt_bias.to(params.dt_bias.dtype), dA_log, dD, dnorm_weight)


class MambaMixerCoreFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, zxbcdt: torch.Tensor, plan: CorePlan, *params: torch.Tensor | None) -> torch.Tensor:
        normed, saved = core_forward(zxbcdt, CoreParameters(*params), plan)
        ctx.save_for_backward(zxbcdt, *params, *saved)
        ctx.plan = plan
        return normed

    @staticmethod
    def backward(ctx, dnormed: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        zxbcdt, *rest = ctx.saved_tensors
        params = CoreParameters(*rest[: len(CoreParameters._fields)])
        grad, dparams = core_backward(dnormed, zxbcdt, params, rest[len(CoreParameters._fields) :], ctx.plan)
        return grad, None, *dparams


def core_plan(
    zxbcdt: torch.Tensor, params: CoreParameters, eps: float, groups: int, chunk_size: int,
    cu_seqlens: torch.Tensor | None,
) -> CorePlan:
    """Checks the core's inputs (ValueError naming the argument at fault) and plans its walk."""
    layout = mixer_layout(zxbcdt, params.conv_weight, params.dt_bias, groups)
    check_gated_norm(layout, params.norm_weight, eps)
    _, xbc, dt = layout.split_projection(zxbcdt)
    check_conv1d_inputs(xbc, params.conv_weight, params.conv_bias, cu_seqlens, "silu")
    x, B, C = layout.split_conv(xbc)
    check_ssd_inputs(x, dt, params.A_log, B, C, params.D, cu_seqlens, chunk_size, None)
    check_triton_device("mamba_mixer_core", zxbcdt, params.norm_weight)
    total = zxbcdt.shape[0]
    return CorePlan(
        layout, eps, stream_doc_start(cu_seqlens, total, zxbcdt.device),
        stream_chunk_plan(cu_seqlens, total, chunk_size, zxbcdt.device),
    )  # fmt: skip


def contiguous_parameters(params: CoreParameters) -> CoreParameters:
    return CoreParameters(*(None if p is None else p.contiguous() for p in params))


def mamba_mixer_core(
    zxbcdt: torch.Tensor,
    conv_weight: torch.Tensor,
    conv_bias: torch.Tensor | None,
    dt_bias: torch.Tensor,
    A_log: torch.Tensor,
    D: torch.Tensor | None,
    norm_weight: torch.Tensor,
    eps: float,
    *,
    groups: int,
    chunk_size: int,
    cu_seqlens: torch.Tensor | None = None,
) -> torch.Tensor:
    """rmsnorm(y * silu(z)) * norm_weight `[T, d_inner]` in zxbcdt's dtype, the input of out_proj, where
    y = SSD(silu(conv1d(xBC)), softplus(dt + dt_bias), -exp(A_log), D).

    zxbcdt `[T, d_inner + conv_dim + H]` is the in_proj output (z, xBC = [x, B, C], dt), read in place; its
    gradient comes back as one tensor of its shape. conv_weight `[conv_dim, width]`, conv_bias `[conv_dim]`,
    dt_bias, A_log and D `[H]`; B and C have `groups` groups; norm_weight `[d_inner]` and eps are the gated
    RMSNorm's (over all of d_inner, statistics and the gated input in float32); `cu_seqlens` int32
    `[n_docs + 1]` restarts the conv window and the scan state at each boundary (None: one document).

    >>> normed = mamba_mixer_core(in_proj(h), conv_weight, conv_bias, dt_bias, A_log, D, norm_weight, 1e-5,
    ...                           groups=1, chunk_size=256, cu_seqlens=cu)
    >>> out = out_proj(normed)
    """
    params = CoreParameters(conv_weight, conv_bias, dt_bias, A_log, D, norm_weight)
    plan = core_plan(zxbcdt, params, eps, groups, chunk_size, cu_seqlens)
    return MambaMixerCoreFunction.apply(rows_in_place(zxbcdt), plan, *contiguous_parameters(params))
