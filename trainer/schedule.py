"""Learning-rate schedules: linear warmup, then cosine decay or warmup-stable-decay (WSD).

The multiplier is a pure function of the step and the config, handed to LambdaLR as a partial: its
checkpoint then holds only the step, and a resumed run follows the schedule of its own config (so raising
`steps` on resume stretches the decay instead of silently keeping the old one).
"""

import functools
import math

import torch
from torch.optim.lr_scheduler import LambdaLR

from gristmill.trainer.config import ScheduleConfig


def learning_rate_factor(
    step: int, *, kind: str, warmup_steps: int, total_steps: int, min_ratio: float, decay_steps: int
) -> float:
    """Multiplier of the base learning rate at `step` (0-based)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if kind == "cosine":
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    decay_start = total_steps - decay_steps
    if step < decay_start:
        return 1.0
    return 1.0 - (1 - min_ratio) * min(1.0, (step - decay_start) / max(1, decay_steps))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, total_steps: int) -> LambdaLR:
    factor = functools.partial(
        learning_rate_factor,
        kind=cfg.kind,
        warmup_steps=cfg.warmup_steps,
        total_steps=total_steps,
        min_ratio=cfg.min_lr_ratio,
        decay_steps=max(1, round(cfg.decay_fraction * total_steps)),
    )
    return LambdaLR(optimizer, factor)
