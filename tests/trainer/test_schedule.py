"""Learning-rate schedules: warmup, cosine and warmup-stable-decay reach the values they promise."""

import itertools

import pytest
import torch

from gristmill.trainer.config import ScheduleConfig
from gristmill.trainer.schedule import build_scheduler


def lrs(cfg: ScheduleConfig, steps: int) -> list[float]:
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=2.0)
    scheduler = build_scheduler(optimizer, cfg, steps)
    values = []
    for _ in range(steps):
        values.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    return values


def test_cosine_warms_up_then_decays_to_the_floor() -> None:
    values = lrs(ScheduleConfig(kind="cosine", warmup_steps=10, min_lr_ratio=0.1), 110)
    assert values[0] == pytest.approx(0.2) and values[9] == pytest.approx(2.0)
    assert all(a >= b for a, b in itertools.pairwise(values[9:]))
    assert values[-1] == pytest.approx(0.2, rel=1e-2)


def test_wsd_holds_then_decays_linearly() -> None:
    values = lrs(ScheduleConfig(kind="wsd", warmup_steps=5, min_lr_ratio=0.0, decay_fraction=0.2), 100)
    assert values[5:80] == [pytest.approx(2.0)] * 75
    assert values[90] == pytest.approx(2.0 * 0.5) and values[-1] == pytest.approx(2.0 * 0.05)
