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
        self.wq = nn.Linear(cfg.d_model, cfg.n_heads * cfg.head_dim, bias=False)
        self.wk = nn.Linear(cfg.d_model, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.wv = nn.Linear(cfg.d_model, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.wo = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor, segments: Segments) -> torch.Tensor:
        """x [T, d_model] -> [T, d_model]."""
        total = x.shape[0]
        q = self.wq(x).view(total, self.n_heads, self.head_dim)
        k = self.wk(x).view(total, self.n_kv_heads, self.head_dim)
        v = self.wv(x).view(total, self.n_kv_heads, self.head_dim)
        q, k = ops.apply_rope(q, k, segments.position_ids, self.rope_theta)
        out = ops.varlen_attention(q, k, v, segments.cu_seqlens, segments.max_seqlen, segments.rows)
        return self.wo(out.reshape(total, self.n_heads * self.head_dim))
