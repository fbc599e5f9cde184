"""Grouped-query attention with RoPE over packed tokens; never attends across a document boundary."""

import torch
from torch import nn

from gristmill.trainer import ops
from gristmill.trainer.models.config import ModelConfig
from gristmill.trainer.models.norm import RMSNorm
from gristmill.trainer.models.segments import Segments


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.rope_theta = cfg.rope_theta
        # one projection for q, k and v (output [q heads | k heads | v heads]): one matmul instead of three thin
        # ones, and one input gradient instead of three summed
        self.wqkv = nn.Linear(cfg.d_model, (cfg.n_heads + 2 * cfg.n_kv_heads) * cfg.head_dim, bias=False)
        self.wo = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.d_model, bias=False)

    def forward(
        self, stream: torch.Tensor, norm: RMSNorm, segments: Segments, rstd: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The residual stream [T, d_model] -> (the heads' output [T, n_heads * head_dim] of its `norm`, before `wo`,
        and the stream handed back through the op): the block projects the output together with the residual add
        and the MLP's norm (`ops.project_norm_mlp`). `rstd`, each row's, when the GEMM that wrote the stream
        computed it: the norm then folds into the projection (`ops.norm_project_rotary_attention`)."""
        out, stream = ops.norm_project_rotary_attention(
            stream, rstd, norm.weight, norm.eps, self.wqkv.weight, self.n_heads, self.n_kv_heads, self.rope_theta,
            segments,
        )  # fmt: skip
        return out.reshape(stream.shape[0], self.n_heads * self.head_dim), stream
