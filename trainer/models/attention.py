"""Grouped-query attention with RoPE over packed tokens; never attends across a document boundary."""

import torch
from torch import nn

from gristmill.trainer import ops
from gristmill.trainer.models.config import ModelConfig
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

    def forward(self, x: torch.Tensor, segments: Segments) -> torch.Tensor:
        """x [T, d_model] -> the heads' output [T, n_heads * head_dim] before `wo`: the block projects it together
        with the residual add and the MLP's norm (`ops.project_norm_mlp`)."""
        out = ops.project_rotary_attention(
            x, self.wqkv.weight, self.n_heads, self.n_kv_heads, self.rope_theta, segments
        )
        return out.reshape(x.shape[0], self.n_heads * self.head_dim)
