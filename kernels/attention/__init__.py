"""Exact attention over packed documents (cu_seqlens): Triton forward and backward, plain-PyTorch references."""

from gristmill.kernels.attention.function import flash_attention_varlen
from gristmill.kernels.attention.reference import attention_reference, sdpa_attention_reference

__all__ = ["attention_reference", "flash_attention_varlen", "sdpa_attention_reference"]
