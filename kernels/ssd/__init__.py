"""Mamba2 SSD chunked scan, causal depthwise conv1d over packed documents, and the fused mixer core built from
them, each with its reference."""

from gristmill.kernels.ssd.conv1d import causal_conv1d
from gristmill.kernels.ssd.conv1d_reference import causal_conv1d_reference
from gristmill.kernels.ssd.function import ssd_scan
from gristmill.kernels.ssd.mixer import mamba_mixer_core
from gristmill.kernels.ssd.mixer_reference import mamba_mixer_core_reference
from gristmill.kernels.ssd.reference import ssd_chunked_reference, ssd_reference

__all__ = [
    "causal_conv1d",
    "causal_conv1d_reference",
    "mamba_mixer_core",
    "mamba_mixer_core_reference",
    "ssd_chunked_reference",
    "ssd_reference",
    "ssd_scan",
]
