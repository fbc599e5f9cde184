"""Fused RMSNorm with the optional residual add, and Mamba2's gated RMSNorm; see README.md for the math."""

from gristmill.kernels.fused.rms_norm.reference import gated_rms_norm_reference, rms_norm_reference
from gristmill.kernels.fused.rms_norm.triton_fwd_bwd import gated_rms_norm, rms_norm

__all__ = ["gated_rms_norm", "gated_rms_norm_reference", "rms_norm", "rms_norm_reference"]
