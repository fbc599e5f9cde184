"""Learning-rate schedules as picklable multipliers for LambdaLR, so the scheduler checkpoints cleanly."""

import math
from dataclasses import dataclass

import torch
from torch.optim.lr_scheduler import LambdaLR

from gristmill.trainer.config import ScheduleConfig


@dataclass
class LearningRateFactor:
    """Multiplier of the base lr at a step: linear warmup, then cosine decay or warmup-stable-decay."""

    kind: str
    warmup_steps: int
    total_steps: int
    min_ratio: float
    decay_steps: int

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.kind == "cosine":
            progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
            return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
        decay_start = self.total_steps - self.decay_steps
        if step < decay_start:
            return 1.0
        progress = min(1.0, (step - decay_start) / max(1, self.decay_steps))
        return 1.0 - (1 - self.min_ratio) * progress


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, total_steps: int) -> LambdaLR:
    factor = LearningRateFactor(
        kind=cfg.kind,
        warmup_steps=cfg.warmup_steps,
        total_steps=total_steps,
        min_ratio=cfg.min_lr_ratio,
        decay_steps=max(1, round(cfg.decay_fraction * total_steps)),
    )
    return LambdaLR(optimizer, factor)
