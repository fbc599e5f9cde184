"""The Mamba2 mixer core as one autograd function over the in_proj output, on CUDA or the interpreter.

Unfused, the mixer copies xBC out of the projection, copies x, B and C out of the conv output, writes the gated
scan output silu(z) * y for the norm to read back, and its backward concatenates dz, dxBC and ddt (and dx, dB,
dC) back together. Here the conv reads xBC in place from `zxbcdt`, the scan reads x, B and C in place from the
conv output, the gated RMSNorm reads y and z (in place) and writes the normed output, and the backward writes dz,
dxBC and ddt straight into one gradient shaped like `zxbcdt`: the gated norm's backward and the conv backward
write into its column slices, the scan backward into slices of the conv output's gradient.
"""

import torch

from gristmill.kernels.fused.launch import check_triton_device
from gristmill.kernels.fused.rms_norm.triton_fwd_bwd import rms_norm_bwd, rms_norm_fwd
from gristmill.kernels.ssd.conv1d import conv1d_bwd, conv1d_fwd
from gristmill.kernels.ssd.conv1d_reference import check_conv1d_inputs
from gristmill.kernels.ssd.documents import ChunkPlan, stream_chunk_plan, stream_doc_start
from gristmill.kernels.ssd.function import ScanInputs, ScanIntermediates, ssd_backward, ssd_forward
from gristmill.kernels.ssd.layout import empty_rows_like, rows_in_place
from gristmill.kernels.ssd.mixer_reference import MixerLayout, check_gated_norm, mixer_layout
from gristmill.kernels.ssd.validation import check_ssd_inputs


class MambaMixerCoreFunction(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        zxbcdt: torch.Tensor,
        conv_weight: torch.Tensor,
        conv_bias: torch.Tensor | None,
        dt_bias: torch.Tensor,
        A_log: torch.Tensor,
        D: torch.Tensor | None,
        norm_weight: torch.Tensor,
        eps: float,
        layout: MixerLayout,
        doc_start: torch.Tensor,
        plan: ChunkPlan,
    ) -> torch.Tensor:
        z, xbc, dt_raw = layout.split_projection(zxbcdt)
        conv_out = conv1d_fwd(xbc, conv_weight, conv_bias, doc_start, silu=True)
        x, B, C = layout.split_conv(conv_out)
        y, _, saved = ssd_forward(ScanInputs(x, dt_raw, A_log, B, C, D, dt_bias), None, plan, keep_final_state=False)
        y = y.view(z.shape)
        normed, _, rstd = rms_norm_fwd(y, norm_weight, eps, gate=z)
        ctx.save_for_backward(
            zxbcdt, conv_weight, conv_bias, dt_bias, A_log, D, norm_weight, doc_start, conv_out, y, rstd, *saved
        )
        ctx.layout, ctx.plan = layout, plan
        return normed

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, dnormed: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        zxbcdt, conv_weight, conv_bias, dt_bias, A_log, D, norm_weight, doc_start, conv_out, y, rstd, *saved = (
            ctx.saved_tensors
        )
        layout: MixerLayout = ctx.layout
        grad = empty_rows_like(zxbcdt)
        z, xbc, dt_raw = layout.split_projection(zxbcdt)
        dz, dxbc, ddt_raw = layout.split_projection(grad)
        dy = torch.empty_like(y)
        dnorm_weight = rms_norm_bwd(dnormed.contiguous(), y, norm_weight, rstd, dy, gate=z, dgate=dz)
        dconv_out = torch.empty_like(conv_out)
        x, B, C = layout.split_conv(conv_out)
        _, dA_log, dD, _, ddt_bias = ssd_backward(
            ScanInputs(x, dt_raw, A_log, B, C, D, dt_bias), ScanIntermediates(*saved), dy.view(x.shape), None, ctx.plan,
            layout.split_conv(dconv_out), keep_initial_gradient=False, ddt=ddt_raw,
        )  # fmt: skip
        dweight, dbias = conv1d_bwd(xbc, conv_weight, conv_bias, doc_start, dconv_out, silu=True, dx=dxbc)
        return grad, dweight, dbias, ddt_bias.to(dt_bias.dtype), dA_log, dD, dnorm_weight, None, None, None, None


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
    layout = mixer_layout(zxbcdt, conv_weight, dt_bias, groups)
    check_gated_norm(layout, norm_weight, eps)
    _, xbc, dt = layout.split_projection(zxbcdt)
    check_conv1d_inputs(xbc, conv_weight, conv_bias, cu_seqlens, "silu")
    x, B, C = layout.split_conv(xbc)
    check_ssd_inputs(x, dt, A_log, B, C, D, cu_seqlens, chunk_size, None)
    check_triton_device("mamba_mixer_core", zxbcdt, norm_weight)
    total = zxbcdt.shape[0]
    return MambaMixerCoreFunction.apply(
        rows_in_place(zxbcdt),
        conv_weight.contiguous(),
        None if conv_bias is None else conv_bias.contiguous(),
        dt_bias,
        A_log,
        None if D is None else D.contiguous(),
        norm_weight.contiguous(),
        eps,
        layout,
        stream_doc_start(cu_seqlens, total, zxbcdt.device),
        stream_chunk_plan(cu_seqlens, total, chunk_size, zxbcdt.device),
    )
