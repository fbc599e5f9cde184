"""The one dispatch point between the model and the kernels: Triton on CUDA, plain PyTorch otherwise.

Each op calls `gristmill.kernels.*` when its input lives on a CUDA device, kernels are enabled, and the
kernel module imports; else it runs the reference in `gristmill.trainer.reference`. A kernel module that is
missing or fails to import is reported once and the reference is used from then on.
"""

import functools
import importlib
from collections.abc import Callable

import torch

from gristmill.pipeline.log import get_logger
from gristmill.trainer.reference import attention as attention_reference
from gristmill.trainer.reference import fused as fused_reference
from gristmill.trainer.reference import ssd as ssd_reference

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
    return attention_reference.varlen_attention(q, k, v, cu_seqlens, rows)


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
    return ssd_reference.ssd_scan(x, dt, A, B, C, D=D, cu_seqlens=cu_seqlens, chunk_size=chunk_size)


def causal_conv1d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, cu_seqlens: torch.Tensor
) -> torch.Tensor:
    """Depthwise causal conv + SiLU that never reads across a segment start: x [T, C] -> [T, C]."""
    kernel = _kernel("ssd", "causal_conv1d", x)
    if kernel is not None:
        return kernel(x, weight, bias, cu_seqlens=cu_seqlens, activation="silu")
    return ssd_reference.causal_conv1d(x, weight, bias, cu_seqlens=cu_seqlens, activation="silu")


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    kernel = _kernel("fused", "rms_norm", x)
    if kernel is not None:
        return kernel(x, weight, eps)
    return fused_reference.rms_norm(x, weight, eps)


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    kernel = _kernel("fused", "swiglu", gate)
    if kernel is not None:
        return kernel(gate, up)
    return fused_reference.swiglu(gate, up)


def apply_rope(
    q: torch.Tensor, k: torch.Tensor, position_ids: torch.Tensor, theta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    kernel = _kernel("fused", "apply_rope", q)
    if kernel is not None:
        return kernel(q, k, position_ids, theta)
    return fused_reference.apply_rope(q, k, position_ids, theta)


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
    return fused_reference.linear_cross_entropy(hidden, weight, labels, ignore_index=ignore_index, z_loss=z_loss)
