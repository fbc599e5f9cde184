"""The attention's output projection, the residual add, the MLP's RMSNorm and the SwiGLU MLP on quack's GEMMs.

Unfused, the block writes the projection's output, and a norm kernel reads it with the stream and writes the stream
and the normed input (four passes over [T, d]) before the MLP's first GEMM reads that input. Here the projection's
GEMM adds the stream in its epilogue and writes the stream, the stream times the norm's weight and each row's sum
of squares; the MLP's gate/up GEMM applies each row's rstd in its own epilogue (a row scale commutes through a
matmul), so no pass of its own remains in the forward (on an H100 at T 65536, d 1024: 268 us for the projection
with all of that against 376 us for cuBLAS's projection and the norm). Nor in the backward: the SwiGLU
gradient's epilogue scales by rstd, so the gate/up GEMMs' gradients come out for the unscaled input, and also sums
each row's d(preact) * preact, which is rstd's gradient up to a factor; the GEMM that hands back the gradient of
the weighted input applies the norm's backward in its epilogue (quack's `rms_bwd_apply_epi`: times the weight,
plus the stream's own gradient, plus h times that row's correction) and sums the weight's gradient. The norm kernel's
read of that gradient, h and the stream's gradient is gone (transformer_350m 1.008x, bench/results/end_to_end.md
run 14).
"""

import torch

from gristmill.kernels.fused.quack_support import compute_dtype
from gristmill.kernels.fused.swiglu_mlp import quack_mlp
from gristmill.kernels.fused.swiglu_mlp.interleave import interleave_gate_up
from gristmill.kernels.fused.swiglu_mlp.quack_mlp import swiglu_mlp_unavailable_reason
from gristmill.kernels.fused.weight_gradient import weight_gradient


class _ProjectedNormMLP(torch.autograd.Function):
    """w_out and w_down come in their own dtype and are cast here, so their gradients leave the weight-gradient
    GEMMs in that dtype (weight_gradient.py)."""

    @staticmethod
    def forward(ctx, core, w_out, stream, norm_weight, eps, w_gate_up, w_down, gemms, next_eps):
        ctx.weight_dtypes = w_out.dtype, w_down.dtype
        w_out, w_down = w_out.to(core.dtype), w_down.to(core.dtype)
        hidden = torch.empty_like(stream)
        weighted, rstd = gemms.gemm_rms(
            core, w_out.T, C=stream, norm_weight=norm_weight, premult_out=hidden, eps=eps, dynamic_scheduler=True
        )
        preact, postact = gemms.gemm_norm_act(
            weighted, w_gate_up.T, rstd=rstd, activation="swiglu", store_preact=True, dynamic_scheduler=True
        )
        ctx.save_for_backward(core, w_out, hidden, weighted, rstd, norm_weight, w_gate_up, preact, postact, w_down)
        ctx.gemms = gemms
        if next_eps is None:
            return gemms.gemm_add(postact, w_down.T, hidden), None
        # the next block's norm statistics from the float32 sum before it is rounded into the stream
        out, rstd = gemms.gemm_rms(postact, w_down.T, C=hidden, eps=next_eps, dynamic_scheduler=True)
        ctx.mark_non_differentiable(rstd)
        return out, rstd

    @staticmethod
    def backward(ctx, dout, _):
        core, w_out, hidden, weighted, rstd, norm_weight, w_gate_up, preact, postact, w_down = ctx.saved_tensors
        gemms: quack_mlp._QuackGEMMs = ctx.gemms
        dout = dout if dout.stride(-1) == 1 else dout.contiguous()
        dpreact = torch.empty_like(preact)  # of the unscaled pre-activation, weighted @ w_gate_up.T
        dsum = gemms.swiglu_grad_rstd(dout, w_down, preact, out={"D": dpreact}, rstd=rstd,
                                      dynamic_scheduler=True)["dsum"]
        w_out_dtype, w_down_dtype = ctx.weight_dtypes
        dw_down = gemms.gemm(dout.T, postact, out_dtype=w_down_dtype, dynamic_scheduler=True)
        dw_gate_up = gemms.gemm(dpreact.T, weighted, out_dtype=w_gate_up.dtype, dynamic_scheduler=True)
        # the norm's backward: dhidden = dweighted * w + hidden * corr + dout (the stream's own gradient), with
        # dweighted = dpreact @ w_gate_up and corr = -rstd^2 / d * dsum, in that GEMM's epilogue
        correction = rstd.square().mul_(dsum).mul_(-1.0 / hidden.shape[-1])
        applied = gemms.norm_grad_apply(dpreact, w_gate_up, dout, y=hidden, w=norm_weight, corr=correction,
                                        out={"D": torch.empty_like(hidden)}, dynamic_scheduler=True)
        dhidden, dnorm_weight = applied["D"], applied["dw"].to(norm_weight.dtype)
        dcore = gemms.gemm(dhidden, w_out, dynamic_scheduler=True)  # quack beat cuBLAS here (fused.md run 10)
        dw_out = weight_gradient(dhidden.T, core, w_out_dtype)
        return dcore, dw_out, dhidden, dnorm_weight, None, dw_gate_up, dw_down, None, None


def projected_norm_mlp_unavailable_reason(
    core: torch.Tensor, w_out: torch.Tensor, stream: torch.Tensor, w_gate_up: torch.Tensor, w_down: torch.Tensor
) -> str | None:
    """None when `projected_norm_mlp` can run these inputs, else why not (the caller projects, norms and runs the
    MLP apart)."""
    if core.dim() != 2 or w_out.shape != (stream.shape[-1], core.shape[-1]) or stream.shape[0] != core.shape[0]:
        shapes = f"core {tuple(core.shape)}, w_out {tuple(w_out.shape)}, stream {tuple(stream.shape)}"
        return f"shapes {shapes} are not a projection's [T, k], [d, k] into a [T, d] stream"
    if core.shape[-1] % 8:
        return f"the projection's input width ({core.shape[-1]}) must be a multiple of 8 for quack's GEMMs"
    return swiglu_mlp_unavailable_reason(stream, w_gate_up, w_down)


def projected_norm_mlp(
    core: torch.Tensor,
    w_out: torch.Tensor,
    stream: torch.Tensor,
    norm_weight: torch.Tensor,
    eps: float,
    w_gate_up: torch.Tensor,
    w_down: torch.Tensor,
    next_norm_eps: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(h + down(swiglu(rmsnorm(h) @ w_gate_up.T)) with h = stream + core @ w_out.T, None), differentiable in all
    but eps; w_gate_up's rows are [gate | up]. With `next_norm_eps`, the None is each output row's rstd for the next
    block's RMSNorm with that eps (float32 `[T]`, from the down GEMM's epilogue; no gradient flows through it, its
    consumer routes rstd's gradient to the stream, as `normed_projected_rotary_qkv_attention` does). Check
    `projected_norm_mlp_unavailable_reason` first. The norm's statistics come from h in float32 before it is
    rounded to the stream's dtype (the unfused norm reads it rounded). Under autocast the matmul operands are cast
    as a matmul would cast them; norm_weight stays as it is. A failure inside quack raises `QuackMLPFailed` and
    makes every later availability check of either MLP op name it."""
    gemms, reason = quack_mlp._quack_gemms()
    if gemms is None:
        raise ValueError(f"projected_norm_mlp needs quack-kernels: {reason}")
    if torch.is_autocast_enabled("cuda"):  # w_gate_up is cast in its interleaving copy, w_out and w_down in the op
        core, stream = core.to(compute_dtype(core)), stream.to(compute_dtype(core))
    elif len(dtypes := {t.dtype for t in (core, w_out, stream, w_gate_up, w_down)}) > 1:
        # a caller's mix-up, not quack's failure: it must not switch quack off for the run
        raise ValueError(f"projected_norm_mlp: core, w_out, stream, w_gate_up and w_down need one dtype outside "
                         f"autocast, got {dtypes}")
    with torch.autocast("cuda", enabled=False):
        return quack_mlp._failures.call(  # one record for both MLP paths: they run the same library
            _ProjectedNormMLP.apply, core, w_out, stream, norm_weight, eps, interleave_gate_up(w_gate_up, core.dtype),
            w_down, gemms, next_norm_eps,
        )  # fmt: skip
