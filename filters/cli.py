"""`gristmill filter ...`: commands of the filters package (mounted by the main CLI)."""

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Quality filters: train a fastText quality classifier.",
                  no_args_is_help=True)


@app.callback()
def filters() -> None:
    """Quality filters (a command group, so `gristmill filter train-classifier` keeps its name)."""


@app.command("train-classifier")
def train_classifier(
    positive: Annotated[list[str], typer.Option(help="Good documents: files or globs (jsonl, parquet, ...).")],
    negative: Annotated[list[str], typer.Option(help="Bad documents: files or globs.")],
    output: Annotated[Path, typer.Option(help="Where to save the fastText model (.bin).")] = Path("quality.bin"),
    epochs: Annotated[int, typer.Option(help="Passes over the training documents.")] = 5,
    dim: Annotated[int, typer.Option(help="Embedding size.")] = 256,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 0.1,
    word_ngrams: Annotated[int, typer.Option(help="Longest word n-gram used as a feature (2: bigrams).")] = 2,
    holdout_fraction: Annotated[float, typer.Option(help="Share of documents held out for P/R/F1.")] = 0.1,
    seed: Annotated[int, typer.Option(help="Shuffle and training seed.")] = 0,
) -> None:
    """Train a supervised fastText classifier (DCLM recipe) and report held-out precision, recall and F1."""
    from gristmill.filters.train_classifier import TrainClassifierConfig
    from gristmill.filters.train_classifier import train_classifier as train
    from gristmill.pipeline.errors import UserError

    try:
        config = TrainClassifierConfig(
            positive=positive, negative=negative, output=output, epochs=epochs, dim=dim, lr=lr,
            word_ngrams=word_ngrams, holdout_fraction=holdout_fraction, seed=seed,
        )
    except ValueError as err:
        raise UserError(str(err)) from None
    scores = train(config)
    typer.echo(
        f"saved {output}; held out {scores.examples} documents: precision {scores.precision:.3f}, "
        f"recall {scores.recall:.3f}, F1 {scores.f1:.3f}"
    )
