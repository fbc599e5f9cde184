"""The `gristmill` command. Every user mistake ends as one `error: ...` line and exit code 2."""

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from gristmill.pipeline.errors import UserError

app = typer.Typer(
    help="gristmill: corpus → dedup → filters → token shards → trained model.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.command()
def run(
    recipe: Annotated[Path, typer.Argument(help="Pipeline recipe (TOML): input, stages, output, executor.")],
    executor: Annotated[Optional[str], typer.Option(help="local or ray (overrides the recipe).")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Parallel tasks (overrides the recipe).")] = None,
    output: Annotated[Optional[str], typer.Option(help="Output folder (overrides the recipe).")] = None,
) -> None:
    """Run a pipeline recipe. Rerunning the same command skips finished shards."""
    from gristmill.pipeline.recipe import load_recipe
    from gristmill.pipeline.run import run_recipe
    from gristmill.pipeline.stats_table import print_stats

    loaded = load_recipe(
        recipe, {"executor": {"kind": executor, "workers": workers}, "output": {"path": output}}
    )
    stats = run_recipe(loaded)
    print_stats(stats)


@app.command()
def stats(out: Annotated[Path, typer.Argument(help="A run's output folder.")]) -> None:
    """Print the per-stage table of a finished (or partial) run."""
    from gristmill.pipeline.stats_table import load_run_stats, print_stats

    print_stats(load_run_stats(out))


def _mount_subcommands() -> None:
    """Each package owns its commands; the root command only gathers them."""
    from gristmill.filters.cli import app as filter_app
    from gristmill.pipeline.report.cli import report
    from gristmill.tokenizer.cli import app as tokenizer_app
    from gristmill.tokenizer.cli import tokenize
    from gristmill.trainer.cli import app as train_app

    app.add_typer(filter_app, name="filter")
    app.add_typer(tokenizer_app, name="tokenizer", help="Train a BPE tokenizer.")
    app.command(name="tokenize")(tokenize)
    app.add_typer(train_app, name="train")
    app.command(name="report")(report)


_mount_subcommands()


def main() -> None:
    try:
        app()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except FileNotFoundError as err:
        print(f"error: no such file: {err.filename}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: finished shards are kept; rerun the same command to resume", file=sys.stderr)
        sys.exit(130)
