"""The one dispatch point between the model and the kernels: Triton on CUDA, plain PyTorch otherwise.

Each op calls `gristmill.kernels.*` when its input lives on a CUDA device, kernels are enabled, and the
kernel can be found; else it runs the plain-PyTorch reference that ships beside that kernel. A kernel that
cannot be loaded is reported once and the reference is used from then on.
"""

import functools
import importlib
from collections.abc import Callable

import torch

from gristmill.kernels.attention.reference import sdpa_attention_reference
from gristmill.kernels.fused.linear_cross_entropy.reference import linear_cross_entropy_reference
from gristmill.kernels.fused.rms_norm.reference import rms_norm_reference
from gristmill.kernels.fused.rope.reference import apply_rope_reference
from gristmill.kernels.fused.swiglu.reference import swiglu_reference
from gristmill.kernels.ssd.conv1d_reference import causal_conv1d_reference
from gristmill.kernels.ssd.reference import ssd_chunked_reference
from gristmill.pipeline.log import get_logger

_log = get_logger(__name__)
_kernels_enabled = True
_unavailable: dict[str, str] = {}


def enable_kernels(enabled: bool) -> None:
    """Turns the Triton path on or off for the whole process (off: every op takes its reference)."""
    global _kernels_enabled
    _kernels_enabled = enabled


@functools.cache
def _load_kernel(module: str, name: str) -> Callable | None:
    try:
        return getattr(importlib.import_module(f"gristmill.kernels.{module}"), name)
    except Exception as err:  # a broken kernel module must not stop training: fall back, say so once
        _unavailable[f"{module}.{name}"] = f"{type(err).__name__}: {err}"
        _log.warning("kernel %s.%s unavailable (%s); using the PyTorch reference", module, name,
                     _unavailable[f"{module}.{name}"])
        return None


def unavailable_kernels() -> dict[str, str]:
    """Kernels that were asked for but failed to import, with the reason: benchmarks print this."""
    return dict(_unavailable)


def _kernel(module: str, name: str, tensor: torch.Tensor) -> Callable | None:
    if not (_kernels_enabled and tensor.is_cuda):
        return None
    return _load_kernel(module, name)


def varlen_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int, rows: int
) -> torch.Tensor:
    """Causal attention within each segment: q [T, Hq, D], k/v [T, Hkv, D] -> [T, Hq, D]."""
    kernel = _kernel("attention", "flash_attention_varlen", q)
    if kernel is not None:
        return kernel(q, k, v, cu_seqlens, max_seqlen, causal=True)
    return sdpa_attention_reference(q, k, v, cu_seqlens, max_seqlen, rows=rows)


def ssd_scan(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    *,
    D: torch.Tensor,
    cu_seqlens: torch.Tensor,
    chunk_size: int,
) -> torch.Tensor:
    """The Mamba2 selective scan with state reset at every segment start: x [T, H, P] -> [T, H, P]."""
    kernel = _kernel("ssd", "ssd_scan", x)
    if kernel is not None:
        return kernel(x, dt, A, B, C, D=D, cu_seqlens=cu_seqlens, chunk_size=chunk_size)
    return ssd_chunked_reference(x, dt, A, B, C, D=D, cu_seqlens=cu_seqlens, chunk_size=chunk_size)


def causal_conv1d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, cu_seqlens: torch.Tensor
) -> torch.Tensor:
    """Depthwise causal conv + SiLU that never reads across a segment start: x [T, C] -> [T, C]."""
    kernel = _kernel("ssd", "causal_conv1d", x)
    if kernel is not None:
        return kernel(x, weight, bias, cu_seqlens=cu_seqlens, activation="silu")
    return causal_conv1d_reference(x, weight, bias, cu_seqlens=cu_seqlens, activation="silu")


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    kernel = _kernel("fused", "rms_norm", x)
    if kernel is not None:
        return kernel(x, weight, eps)
    return rms_norm_reference(x, weight, eps)


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    kernel = _kernel("fused", "swiglu", gate)
    if kernel is not None:
        return kernel(gate, up)
    return swiglu_reference(gate, up)


def apply_rope(
    q: torch.Tensor, k: torch.Tensor, position_ids: torch.Tensor, theta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    kernel = _kernel("fused", "apply_rope", q)
    if kernel is not None:
        return kernel(q, k, position_ids, theta)
    return apply_rope_reference(q, k, position_ids, theta)


def linear_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, *, ignore_index: int, z_loss: float
) -> torch.Tensor:
    """Summed (not averaged) token loss of hidden [N, D] @ weight[V, D].T against labels [N]."""
    kernel = _kernel("fused", "linear_cross_entropy", hidden)
    if kernel is not None:
        if torch.is_autocast_enabled(hidden.device.type):  # a custom kernel is not autocast: cast as a matmul would
            dtype = torch.get_autocast_dtype(hidden.device.type)
            hidden, weight = hidden.to(dtype), weight.to(dtype)
        return kernel(hidden, weight, labels, ignore_index=ignore_index, z_loss=z_loss, reduction="sum")
    return linear_cross_entropy_reference(
        hidden, weight, labels, ignore_index=ignore_index, z_loss=z_loss, reduction="sum"
    )
