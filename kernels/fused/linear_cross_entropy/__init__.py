"""Chunked fused linear + cross-entropy (z-loss, label smoothing, ignore_index); see README.md."""

from gristmill.kernels.fused.linear_cross_entropy.reference import linear_cross_entropy_reference
from gristmill.kernels.fused.linear_cross_entropy.triton_fwd_bwd import linear_cross_entropy

__all__ = ["linear_cross_entropy", "linear_cross_entropy_reference"]
