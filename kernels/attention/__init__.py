"""Exact attention over packed documents (cu_seqlens): Triton forward and backward, plain-PyTorch reference."""

from gristmill.kernels.attention.function import flash_attention_varlen
from gristmill.kernels.attention.reference import attention_reference

__all__ = ["attention_reference", "flash_attention_varlen"]
