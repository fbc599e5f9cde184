"""AdamW with weight decay on matrices only, fused on CUDA."""

import torch
from torch import nn

from gristmill.trainer.config import OptimizerConfig


def build_optimizer(model: nn.Module, cfg: OptimizerConfig, device: torch.device) -> torch.optim.AdamW:
    """Decays weights with two or more dims (projections, embeddings, conv taps); never norms, biases or the
    per-head SSM parameters (A_log, D, dt_bias), which decay would pull toward meaningless values."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    fused = device.type == "cuda"
    return torch.optim.AdamW(
        groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, fused=fused, foreach=None if fused else True
    )
