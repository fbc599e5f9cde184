"""The public entry point: input checks, the autograd Function over the Triton kernels, and the fallback."""

import warnings

import torch

from gristmill.kernels.attention.backward import attention_backward
from gristmill.kernels.attention.forward import attention_forward
from gristmill.kernels.attention.inputs import OFFSETS_MEMO, check_attention_inputs, resolve_softmax_scale
from gristmill.kernels.attention.reference import attention_reference
from gristmill.kernels.attention.tiles import longest_first
from gristmill.kernels.interpreter import interpreting

SUPPORTED_HEAD_DIMS = (64, 128)
SUPPORTED_DTYPES = (torch.bfloat16, torch.float16)


def document_order(cu_seqlens: torch.Tensor) -> torch.Tensor:
    """`longest_first`, computed once per `cu_seqlens` tensor: every attention layer of a step shares it."""
    return OFFSETS_MEMO.get(cu_seqlens, "longest_first", lambda: longest_first(cu_seqlens))


def _last_dim_contiguous(x: torch.Tensor) -> torch.Tensor:
    return x if x.stride(-1) == 1 else x.contiguous()


class FlashAttentionVarlenFunction(torch.autograd.Function):
    """Saves q, k, v, the output and the base-2 log-sum-exp; the backward recomputes probabilities."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda")
    def forward(ctx, q, k, v, cu_seqlens, max_seqlen, causal, window, softmax_scale):
        q, k, v = (_last_dim_contiguous(x) for x in (q, k, v))
        doc_order = document_order(cu_seqlens)
        out, lse = attention_forward(q, k, v, cu_seqlens, max_seqlen, causal, window, softmax_scale, doc_order)
        ctx.save_for_backward(q, k, v, out, lse, cu_seqlens, doc_order)
        ctx.settings = (max_seqlen, causal, window, softmax_scale)
        return out

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad_out):
        q, k, v, out, lse, cu_seqlens, doc_order = ctx.saved_tensors
        dq, dk, dv = attention_backward(
            _last_dim_contiguous(grad_out), q, k, v, out, lse, cu_seqlens, *ctx.settings, doc_order=doc_order
        )
        return dq, dk, dv, None, None, None, None, None


def unsupported_reason(q: torch.Tensor) -> str | None:
    """Why the kernel cannot take q (its head dim or dtype), None when it can."""
    if q.shape[-1] not in SUPPORTED_HEAD_DIMS:
        return f"head dim {q.shape[-1]} (kernel supports {SUPPORTED_HEAD_DIMS})"
    if q.dtype not in SUPPORTED_DTYPES:
        return f"dtype {q.dtype} (kernel supports bfloat16 and float16)"
    return None


def check_kernel_device(q: torch.Tensor) -> None:
    if not q.is_cuda and not interpreting():
        raise ValueError(f"q is on {q.device}: the Triton kernel needs CUDA tensors; use attention_reference on CPU")


def flash_attention_varlen(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: torch.Tensor,
    max_seqlen: int,
    *,
    causal: bool = True,
    window: int | None = None,
    softmax_scale: float | None = None,
) -> torch.Tensor:
    """Exact attention over packed documents; no token attends across a `cu_seqlens` boundary.

    Args:
        q: `[T, Hq, D]`, all tokens of the batch one after another; bf16 or fp16, D in (64, 128).
        k, v: `[T, Hkv, D]`; Hkv divides Hq (grouped-query attention).
        cu_seqlens: int32 `[N+1]`, document starts from 0 to T; empty documents are allowed.
        max_seqlen: the longest document, in tokens (an upper bound is fine; it only sizes the grid).
        causal: each query sees only keys at or before it.
        window: with causal, query i sees keys i-window+1 .. i; None for full causal attention.
        softmax_scale: defaults to 1/sqrt(D).

    Returns `[T, Hq, D]` in q's dtype, differentiable in q, k, v. Other head dims and dtypes fall back to
    `attention_reference` with a warning. CPU tensors run only in Triton's interpreter (TRITON_INTERPRET=1).

    Example:
        >>> cu = torch.tensor([0, 3000, 8192], dtype=torch.int32, device="cuda")
        >>> out = flash_attention_varlen(q, k, v, cu, max_seqlen=5192)
    """
    check_attention_inputs(q, k, v, cu_seqlens, max_seqlen, causal, window)
    scale = resolve_softmax_scale(q.shape[-1], softmax_scale)
    reason = unsupported_reason(q)
    if reason is not None:
        warnings.warn(f"flash_attention_varlen: {reason}; using the slow fp32 reference", stacklevel=2)
        return attention_reference(q, k, v, cu_seqlens, max_seqlen, causal=causal, window=window, softmax_scale=scale)
    check_kernel_device(q)
    return FlashAttentionVarlenFunction.apply(q, k, v, cu_seqlens, max_seqlen, causal, window, scale)
