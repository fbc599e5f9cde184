"""The Mamba2 mixer: input projection, short causal conv, SSD selective scan, gated RMSNorm, output.

State and conv windows restart at every document boundary, so a packed row behaves like its documents
run one by one.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from gristmill.trainer import ops
from gristmill.trainer.models.config import ModelConfig
from gristmill.trainer.models.segments import Segments


class Mamba2(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        ssm = cfg.ssm
        self.d_inner, self.heads, self.head_dim = cfg.d_inner, cfg.ssm_heads, ssm.head_dim
        self.groups, self.d_state, self.chunk_size = ssm.n_groups, ssm.d_state, ssm.chunk_size
        self.dt_range = (ssm.dt_min, ssm.dt_max)
        self.eps = cfg.norm_eps
        self.conv_dim = self.d_inner + 2 * self.groups * self.d_state
        self.in_proj = nn.Linear(cfg.d_model, self.d_inner + self.conv_dim + self.heads, bias=False)
        self.conv_weight = nn.Parameter(torch.empty(self.conv_dim, ssm.d_conv))
        self.conv_bias = nn.Parameter(torch.empty(self.conv_dim))
        self.dt_bias = nn.Parameter(torch.empty(self.heads))
        self.A_log = nn.Parameter(torch.empty(self.heads))
        self.D = nn.Parameter(torch.empty(self.heads))
        self.norm_weight = nn.Parameter(torch.empty(self.d_inner))
        self.out_proj = nn.Linear(self.d_inner, cfg.d_model, bias=False)
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

    def forward(self, x: torch.Tensor, segments: Segments) -> torch.Tensor:
        """x [T, d_model] -> [T, d_model]."""
        total = x.shape[0]
        z, xbc, dt = self.in_proj(x).split([self.d_inner, self.conv_dim, self.heads], dim=-1)
        xbc = ops.causal_conv1d(xbc.contiguous(), self.conv_weight, self.conv_bias, segments.cu_seqlens)
        xs, B, C = xbc.split([self.d_inner, self.groups * self.d_state, self.groups * self.d_state], dim=-1)
        y = ops.ssd_scan(
            xs.reshape(total, self.heads, self.head_dim),
            F.softplus(dt.float() + self.dt_bias),
            -torch.exp(self.A_log.float()),
            B.reshape(total, self.groups, self.d_state),
            C.reshape(total, self.groups, self.d_state),
            D=self.D,
            cu_seqlens=segments.cu_seqlens,
            chunk_size=self.chunk_size,
        )
        gated = ops.swiglu(z, y.reshape(total, self.d_inner))  # silu(z) * y, one fused kernel on GPU
        return self.out_proj(ops.rms_norm(gated, self.norm_weight, self.eps))
