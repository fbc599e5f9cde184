"""The SwiGLU MLP on quack's CuTe-DSL GEMMs (optional dependency `quack-kernels`, Hopper and newer).

cuBLAS cannot apply SwiGLU in a GEMM epilogue, so the plain path writes gate_up, reads it back for the activation,
and in the backward writes dA for the activation's gradient to read again: passes that run at HBM bandwidth and
cost about 12 ms per transformer_350m step on an H100. Our own Triton GEMMs with those epilogues ran no faster
(the GEMMs lost what the epilogues saved, bench/results/swiglu_mlp.md); quack's warp-specialized kernels overlap
the epilogue with the next tile's main loop. The down projection adds the residual stream in its epilogue too, so
the norm after the MLP reads one tensor instead of a delta and the stream. quack wants gate and up interleaved column
by column; the model keeps `[gate | up]` rows (checkpoints and the CPU path unchanged) and interleaves a copy per
call, cast to the compute dtype in the same copy, whose backward turns the gradient back (interleave.py).
"""

import functools
from collections.abc import Callable
from typing import NamedTuple

import torch

from gristmill.kernels.fused.quack_support import (
    FailureRecord, QuackFailed, compute_dtype, hopper_reason, import_quack,
)
from gristmill.kernels.fused.swiglu_mlp.interleave import interleave_gate_up

class QuackMLPFailed(QuackFailed):
    """quack raised on the MLP; the MLP can go on with cuBLAS and the Triton SwiGLU."""


_failures = FailureRecord(QuackMLPFailed)


class _QuackGEMMs(NamedTuple):
    gated_linear: Callable
    """x, w (interleaved [gate, up] rows), activation -> (preact, postact), differentiable in x, w through preact"""
    gemm: Callable
    gemm_add: Callable
    swiglu_grad: Callable
    """dout, w_down, preact -> {"D": d(preact)}: the dA GEMM with the SwiGLU gradient in its epilogue"""
    gemm_rms: Callable
    """A, B, C, norm_weight, premult_out -> ((A @ B + C) * norm_weight, rstd), A @ B + C written to premult_out"""
    gemm_norm_act: Callable
    """A, B, rstd, activation -> (preact, postact) of (A @ B) * rstd, rstd a per-row scale"""
    swiglu_grad_rstd: Callable
    """swiglu_grad whose result is scaled by a per-row rstd, and each row's sum of d(preact) * preact ("dsum")"""
    norm_grad_apply: Callable
    """A, B, C, y, w, corr -> {"D": (A @ B) * w + C + y * corr, "dw": column sums of (A @ B) * y}: an RMSNorm's
    backward in the epilogue of the GEMM that hands back the gradient of its weighted input"""


@functools.cache
def _quack_gemms() -> tuple[_QuackGEMMs | None, str | None]:
    """quack's GEMMs the MLP uses, or None and why they cannot be imported (not installed, or its CUDA libraries
    fail)."""
    epilogues = "gristmill.kernels.fused.swiglu_mlp.quack_epilogue"
    found, reason = import_quack(
        "MLP: quack GEMMs with the SwiGLU and the residual add in their epilogues",
        "quack.linear:linear_gated_func", "quack.gemm_interface:gemm", "quack.gemm_interface:gemm_add",
        f"{epilogues}:swiglu_grad_epilogue", "quack.gemm_interface:gemm_rms", "quack.gemm_interface:gemm_norm_act",
        f"{epilogues}:swiglu_grad_rstd_epilogue", "quack.epilogue.library:rms_bwd_apply_epi",
    )
    return (None if found is None else _QuackGEMMs(*found)), reason


class _DownIntoStream(torch.autograd.Function):
    """stream + postact @ w_down.T in one GEMM (the stream read in its epilogue); the backward's dA GEMM turns
    dout @ w_down into d(preact) through the SwiGLU's gradient in its epilogue. The activation is kept from the
    forward for w_down's gradient (half the pre-activation's memory per MLP) rather than recomputed and stored by
    that epilogue: the store made it the slowest GEMM of the step. quack's own MLP has no stream to add into.
    w_down comes in its own dtype and is cast here, so its gradient leaves the GEMM in that dtype
    (weight_gradient.py)."""

    @staticmethod
    def forward(ctx, preact, w_down, postact, stream, gemms):
        ctx.weight_dtype = w_down.dtype
        w_down = w_down.to(postact.dtype)
        ctx.save_for_backward(preact, w_down, postact)
        ctx.gemms = gemms
        return gemms.gemm_add(postact, w_down.T, stream)

    @staticmethod
    def backward(ctx, dout):
        preact, w_down, postact = ctx.saved_tensors
        gemms = ctx.gemms
        dout = dout if dout.stride(-1) == 1 else dout.contiguous()
        dpreact = torch.empty_like(preact)
        gemms.swiglu_grad(dout, w_down, preact, out={"D": dpreact}, dynamic_scheduler=True)
        dw_down = gemms.gemm(dout.T, postact, out_dtype=ctx.weight_dtype, dynamic_scheduler=True)
        return dpreact, dw_down, None, dout, None


def swiglu_mlp_unavailable_reason(x: torch.Tensor, w_gate_up: torch.Tensor, w_down: torch.Tensor) -> str | None:
    """None when `swiglu_mlp` can run these inputs, else why not (the caller takes the cuBLAS + Triton path)."""
    if (earlier := _failures.earlier()) is not None:
        return earlier
    device = hopper_reason(x)
    if device is not None:
        return device
    hidden, width = w_down.shape[1], x.shape[-1]
    if x.dim() != 2 or w_gate_up.shape != (2 * hidden, width) or w_down.shape != (width, hidden):
        shapes = f"x {tuple(x.shape)}, w_gate_up {tuple(w_gate_up.shape)}, w_down {tuple(w_down.shape)}"
        return f"shapes {shapes} are not an MLP's [T, d], [2F, d], [d, F]"
    if width % 8 or hidden % 8:
        return f"d_model ({width}) and the hidden size ({hidden}) must be multiples of 8 for quack's GEMMs"
    dtype = compute_dtype(x)
    if dtype not in (torch.bfloat16, torch.float16):
        return f"quack's MLP runs in bf16 or fp16, not {dtype}"
    return _quack_gemms()[1]


def swiglu_mlp(x: torch.Tensor, w_gate_up: torch.Tensor, w_down: torch.Tensor, stream: torch.Tensor) -> torch.Tensor:
    """stream + down(silu(gate) * up) for x `[T, d]`, stream `[T, d]`, differentiable in all four; check
    `swiglu_mlp_unavailable_reason` first. Under autocast the inputs are cast as a matmul would cast them (quack's
    functions are not autocast ops). A failure inside quack's forward raises `QuackMLPFailed` and makes every later
    `swiglu_mlp_unavailable_reason` name it."""
    gemms, reason = _quack_gemms()
    if gemms is None:
        raise ValueError(f"swiglu_mlp needs quack-kernels: {reason}")
    if stream.shape != x.shape:
        raise ValueError(f"swiglu_mlp: stream {tuple(stream.shape)} must be shaped like x {tuple(x.shape)}")
    if torch.is_autocast_enabled("cuda"):  # w_gate_up is cast in its interleaving copy, w_down in its GEMM's op
        dtype = torch.get_autocast_dtype("cuda")
        x, stream = x.to(dtype), stream.to(dtype)
    elif len(dtypes := {t.dtype for t in (x, w_gate_up, w_down, stream)}) > 1:
        # a caller's mix-up, not quack's failure: it must not switch quack off for the run
        raise ValueError(f"swiglu_mlp: x, w_gate_up, w_down and stream need one dtype outside autocast, got {dtypes}")
    with torch.autocast("cuda", enabled=False):
        return _failures.call(_mlp, x, w_gate_up, w_down, stream, gemms)


def _mlp(
    x: torch.Tensor, w_gate_up: torch.Tensor, w_down: torch.Tensor, stream: torch.Tensor, gemms: _QuackGEMMs
) -> torch.Tensor:
    preact, postact = gemms.gated_linear(x, interleave_gate_up(w_gate_up, x.dtype), "swiglu", store_preact=True)
    return _DownIntoStream.apply(preact, w_down, postact, stream, gemms)
