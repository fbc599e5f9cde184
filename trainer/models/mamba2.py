"""The Mamba2 mixer: input projection, short causal conv, SSD selective scan, gated RMSNorm, output.

State and conv windows restart at every document boundary, so a packed row behaves like its documents
run one by one.
"""

import math

import torch
from torch import nn

from gristmill.trainer import ops
from gristmill.trainer.models.config import ModelConfig
from gristmill.trainer.models.segments import Segments


class Mamba2(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        ssm = cfg.ssm
        self.heads, self.groups, self.chunk_size = cfg.ssm_heads, ssm.n_groups, ssm.chunk_size
        self.dt_range = (ssm.dt_min, ssm.dt_max)
        self.eps = cfg.norm_eps
        conv_dim = cfg.d_inner + 2 * ssm.n_groups * ssm.d_state  # x, B, C
        self.in_proj = nn.Linear(cfg.d_model, cfg.d_inner + conv_dim + self.heads, bias=False)  # z, xBC, dt
        self.conv_weight = nn.Parameter(torch.empty(conv_dim, ssm.d_conv))
        self.conv_bias = nn.Parameter(torch.empty(conv_dim))
        self.dt_bias = nn.Parameter(torch.empty(self.heads))
        self.A_log = nn.Parameter(torch.empty(self.heads))
        self.D = nn.Parameter(torch.empty(self.heads))
        self.norm_weight = nn.Parameter(torch.empty(cfg.d_inner))
        self.out_proj = nn.Linear(cfg.d_inner, cfg.d_model, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Conv like nn.Conv1d; dt log-uniform in [dt_min, dt_max] stored as its inverse softplus; A in [1, 16]."""
        bound = 1 / math.sqrt(self.conv_weight.shape[1])
        nn.init.uniform_(self.conv_weight, -bound, bound)
        nn.init.uniform_(self.conv_bias, -bound, bound)
        low, high = (math.log(v) for v in self.dt_range)
        dt = torch.exp(torch.rand(self.heads) * (high - low) + low)
        with torch.no_grad():
            self.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))
            self.A_log.copy_(torch.log(torch.empty(self.heads).uniform_(1, 16)))
        nn.init.ones_(self.D)
        nn.init.ones_(self.norm_weight)

    def forward(self, x: torch.Tensor, segments: Segments, stream: torch.Tensor) -> torch.Tensor:
        """x [T, d_model] -> the residual stream [T, d_model] with this layer's output added. The mixer core reads
        z, xBC and dt in place from the in_proj output, ends with the gated RMSNorm and hands back one gradient for
        it (one fused function on GPU)."""
        normed = ops.mamba_mixer_core(
            ops.project(x, self.in_proj.weight),
            self.conv_weight,
            self.conv_bias,
            self.dt_bias,
            self.A_log,
            self.D,
            self.norm_weight,
            self.eps,
            groups=self.groups,
            chunk_size=self.chunk_size,
            cu_seqlens=segments.cu_seqlens,
        )
        return ops.project(normed, self.out_proj.weight, stream)
