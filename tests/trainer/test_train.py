"""End to end on CPU: a tiny hybrid learns; a killed run resumes onto the identical loss curve; bad configs
fail with one line before any work."""

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from gristmill.pipeline.errors import UserError
from gristmill.trainer.cli import app
from gristmill.trainer.config import TrainConfig
from gristmill.trainer.recipe import check_run, load_train_config
from gristmill.trainer.train import Trainer
from trainer_testdata import learnable_documents


def run(cfg: TrainConfig, *, resume: bool = False, stop_at: int | None = None) -> list[dict]:
    trainer = Trainer(cfg, resume=resume)
    try:
        return trainer.fit(stop_at=stop_at)
    finally:
        trainer.close()


def test_tiny_hybrid_learns_in_100_steps(tiny_run: TrainConfig) -> None:
    tiny_run.metrics.log_every = 1
    history = run(tiny_run)
    losses = [r["loss"] for r in history if "loss" in r]
    validation = [r["val_loss"] for r in history if "val_loss" in r]
    assert len(losses) == 100 and losses[0] > math.log(256) - 0.5
    assert np.mean(losses[-10:]) < 0.3 * losses[0]
    assert validation[-1] < 0.3 * losses[0]
    assert (tiny_run.out_dir / "metrics.jsonl").read_text().count("\n") == len(history)


@pytest.mark.skipif(torch.cuda.is_available(), reason="bitwise resume is a CPU promise; GPU kernels may reorder sums")
def test_killed_and_resumed_run_repeats_the_loss_curve_bitwise(tiny_run: TrainConfig, tmp_path: Path) -> None:
    tiny_run.steps, tiny_run.eval_every = 24, 0
    tiny_run.metrics.log_every, tiny_run.checkpoint.every_steps = 1, 8
    uninterrupted = {r["step"]: (r["loss"], r["grad_norm"]) for r in run(tiny_run)}

    tiny_run.out_dir = tmp_path / "interrupted"
    resumed = {r["step"]: (r["loss"], r["grad_norm"]) for r in run(tiny_run, stop_at=11)}  # dies after step 11
    resumed.update({r["step"]: (r["loss"], r["grad_norm"]) for r in run(tiny_run, resume=True, stop_at=19)})
    resumed.update({r["step"]: (r["loss"], r["grad_norm"]) for r in run(tiny_run, resume=True)})  # second resume
    assert resumed == uninterrupted
    kept = sorted(p.name for p in (tiny_run.out_dir / "checkpoints").iterdir())
    assert kept == ["step-00000016", "step-00000024"]


def write_recipe(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_config_mistakes_name_the_option(
    tiny_run: TrainConfig, make_dataset: Callable[..., Path], tmp_path: Path
) -> None:
    manifest = tiny_run.data.manifests[0]
    with pytest.raises(UserError, match="model.d_modle: unknown option"):
        load_train_config(write_recipe(tmp_path / "a.toml", "[model]\nd_modle = 3\n"), preset="tiny_debug")
    with pytest.raises(UserError, match="model.ssm.chunk_size"):
        load_train_config(None, preset="tiny_debug", overrides=["data.seq_len=40"])
    with pytest.raises(UserError, match=r"ssm.d_conv must be at most 4 .* got 5"):
        load_train_config(None, preset="tiny_debug", overrides=["model.ssm.d_conv=5"])
    wide = make_dataset(learnable_documents(np.random.default_rng(), 20), vocab_size=1000)
    cfg = load_train_config(None, preset="tiny_debug", overrides=[f'data.manifests=["{wide}"]'])
    with pytest.raises(UserError, match=r"model.vocab_size \(256\) is smaller than .* vocabulary \(1000\)"):
        check_run(cfg)
    cfg = load_train_config(None, preset="tiny_debug", overrides=[f'data.manifests=["{manifest}"]', "steps=5"])
    assert check_run(cfg).vocab_size == 256 and cfg.steps == 5


def test_cli_prints_one_line_for_a_bad_recipe(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path / "bad.toml", "steps = 10\n[optimizer]\nlr = -1.0\n")
    result = CliRunner().invoke(app, [str(recipe), "--preset", "tiny_debug"])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0 and "optimizer.lr must be positive" in result.output



@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU machine CUDA graphs are allowed")
def test_cli_prints_one_line_for_a_setup_mistake(tiny_run: TrainConfig) -> None:
    """A mistake that only the runtime reveals (here CUDA graphs on a CPU run) is one line too, not a traceback."""
    manifest = tiny_run.data.manifests[0]
    result = CliRunner().invoke(
        app, ["--preset", "tiny_debug", "--set", f'data.manifests=["{manifest}"]', "--set", "cuda_graphs=true",
              "--set", f'out_dir="{tiny_run.out_dir}"'],
    )
    assert result.exit_code == 2, result.output
    assert result.output.strip().count("\n") == 0 and "cuda_graphs = true needs a CUDA device" in result.output


def test_resume_with_another_model_names_what_differs(tiny_run: TrainConfig) -> None:
    tiny_run.steps, tiny_run.eval_every, tiny_run.checkpoint.every_steps = 2, 0, 2
    run(tiny_run)
    tiny_run.model.d_model = 96
    with pytest.raises(UserError, match=r"written by another model \(.*embed\.weight \(256, 64\) saved, \(256, 96\) now"):
        Trainer(tiny_run, resume=True)
