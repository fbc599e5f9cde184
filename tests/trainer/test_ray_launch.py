"""Ray Train launch on CPU: TorchTrainer runs the training function on two gloo workers that train together
and write one checkpoint."""

import json

import pytest
import torch

from gristmill.trainer.config import TrainConfig

pytest.importorskip("ray.train.torch", reason="Ray Train is not installed")


def test_ray_train_runs_two_cpu_workers_that_train_and_checkpoint(
    tiny_run: TrainConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ray

    from gristmill.trainer.ray_launch import train_on_ray

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    tiny_run.out_dir = tiny_run.out_dir.resolve()
    tiny_run.steps, tiny_run.eval_every, tiny_run.metrics.log_every = 20, 0, 1
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        train_on_ray(tiny_run, num_workers=2, use_gpu=False)
    finally:
        ray.shutdown()
    checkpoint = tiny_run.out_dir / "checkpoints" / "step-00000020"
    assert json.loads((checkpoint / "meta.json").read_text()) == {"step": 20, "world_size": 2, "layout": 2}
    records = [json.loads(line) for line in (tiny_run.out_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records]
    assert len(losses) == 20 and losses[-1] < 0.8 * losses[0]
    loader = torch.load(checkpoint / "trainer.pt", weights_only=True)["loader"]
    assert loader["rows"] == 20 * 2 * tiny_run.micro_batch_rows  # 20 steps of both workers' rows
