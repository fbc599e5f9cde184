"""Projections x @ W.T on quack's autotuned GEMMs where those beat cuBLAS (optional: quack-kernels)."""

from gristmill.kernels.fused.projection.quack_projection import (
    QuackProjectionFailed, quack_projection, quack_projection_unavailable_reason,
)

__all__ = ["QuackProjectionFailed", "quack_projection", "quack_projection_unavailable_reason"]
