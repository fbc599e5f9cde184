"""`gristmill train`: train a model from a TOML recipe and/or a named preset; the root CLI mounts `app`."""

from pathlib import Path
from typing import Annotated

import typer

from gristmill.pipeline.errors import UserError
from gristmill.trainer.config import TrainConfig
from gristmill.trainer.presets import TRAIN_PRESETS

app = typer.Typer(add_completion=False, help="Train a language model on token shards.")


@app.callback(invoke_without_command=True, context_settings={"allow_interspersed_args": True})
def train(
    config: Annotated[Path | None, typer.Argument(help="TOML recipe (model, data, optimizer, ... tables)")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the newest checkpoint in out_dir.")] = False,
    preset: Annotated[
        str | None, typer.Option(help=f"Base run the recipe edits: {', '.join(TRAIN_PRESETS)}.")
    ] = None,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="section.option=value, TOML syntax; repeatable.")
    ] = None,
) -> None:
    """Train; a config mistake prints one line and exits with status 2 before any GPU work."""
    from gristmill.trainer.recipe import check_run, load_train_config

    try:
        if config is None and preset is None:
            raise UserError("give a CONFIG.toml, a --preset, or both")
        cfg = load_train_config(config, preset=preset, overrides=overrides or [])
        check_run(cfg)
    except UserError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    run(cfg, resume=resume)


def run(cfg: TrainConfig, *, resume: bool) -> None:
    """Trains in this process (one rank of a torchrun or Ray Train job, or the only one)."""
    from gristmill.trainer.train import Trainer

    try:
        trainer = Trainer(cfg, resume=resume)
    except ValueError as err:  # setup mistakes seen once the device and ranks are known (parallelism, cuda_graphs)
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    try:
        trainer.fit()
    finally:
        trainer.close()


if __name__ == "__main__":  # `torchrun -m gristmill.trainer.cli RECIPE` starts one of these per GPU
    app()
