"""Training on a Ray cluster: Ray Train's TorchTrainer runs one worker per GPU (or CPU process), joins them
in a process group and sets RANK, LOCAL_RANK and WORLD_SIZE; each worker then runs exactly what a torchrun
rank runs (`gristmill.trainer.cli.run`), so sharding, checkpoints and resume are the same code."""

from typing import Any

from gristmill.trainer.config import TrainConfig
from gristmill.trainer.recipe import check_run


def train_loop(config: dict[str, Any]) -> None:
    """One Ray Train worker's whole job; Ray calls it again on every worker after a restart."""
    from gristmill.trainer.cli import run

    run(config["cfg"], resume=config["resume"])


def train_on_ray(
    cfg: TrainConfig, *, num_workers: int, use_gpu: bool, resume: bool = True, max_failures: int = 0
) -> None:
    """Trains `cfg` on `num_workers` Ray Train workers of the connected (or a local) Ray cluster.

    `resume=True` continues from the newest checkpoint in out_dir, which is also what makes a worker group
    restarted after a failure (up to `max_failures` times) pick up where it stopped instead of at step 0.
    Ray Train's own run folder goes to out_dir/ray; out_dir and the token datasets must be on storage
    every node sees.
    """
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    if num_workers < 1:
        raise ValueError(f"num_workers must be at least 1, got {num_workers}")
    check_run(cfg)  # on the driver, before any worker starts
    TorchTrainer(
        train_loop_per_worker=train_loop,
        train_loop_config={"cfg": cfg, "resume": resume},
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        run_config=RunConfig(
            name="gristmill-train",
            storage_path=str(cfg.out_dir.resolve() / "ray"),
            failure_config=FailureConfig(max_failures=max_failures),
        ),
    ).fit()
