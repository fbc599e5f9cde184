"""Mamba2 SSD chunked scan and causal depthwise conv1d over packed documents, with their references."""

from gristmill.kernels.ssd.conv1d import causal_conv1d
from gristmill.kernels.ssd.conv1d_reference import causal_conv1d_reference
from gristmill.kernels.ssd.function import ssd_scan
from gristmill.kernels.ssd.reference import ssd_chunked_reference, ssd_reference

__all__ = ["causal_conv1d", "causal_conv1d_reference", "ssd_chunked_reference", "ssd_reference", "ssd_scan"]
