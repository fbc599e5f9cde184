"""The FSDP2 path (sharding, gradient sync, sharded checkpoints) on one rank trains like the plain model."""

import pytest
import torch.distributed as dist

from gristmill.trainer.config import TrainConfig
from gristmill.trainer.train import Trainer
from trainer_testdata import free_port


def losses(cfg: TrainConfig, *, resume: bool = False) -> dict[int, float]:
    trainer = Trainer(cfg, resume=resume)
    try:
        return {r["step"]: r["loss"] for r in trainer.fit() if "loss" in r}
    finally:
        trainer.close()


def test_fsdp_single_rank_matches_plain_training_and_resumes(
    tiny_run: TrainConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny_run.steps, tiny_run.grad_accum_steps, tiny_run.eval_every = 6, 2, 3
    tiny_run.metrics.log_every, tiny_run.checkpoint.every_steps = 1, 3
    plain = losses(tiny_run)

    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(free_port()))
    tiny_run.parallelism, tiny_run.out_dir = "fsdp", tiny_run.out_dir.with_name("fsdp")
    try:
        sharded = losses(tiny_run)
        tiny_run.steps = 8
        resumed = losses(tiny_run, resume=True)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    assert sharded == pytest.approx(plain, rel=1e-5)
    assert sorted(resumed) == [7, 8]
