"""`gristmill filter ...`: commands of the filters package (mounted by the main CLI)."""

from pathlib import Path
from typing import Annotated, TypeVar

import typer

app = typer.Typer(help="Quality filters: train a fastText quality classifier or language-ID model.",
                  no_args_is_help=True)

ConfigT = TypeVar("ConfigT")
Epochs = Annotated[int, typer.Option(help="Passes over the training documents.")]
Dim = Annotated[int, typer.Option(help="Embedding size.")]
LearningRate = Annotated[float, typer.Option(help="Learning rate.")]
HoldoutFraction = Annotated[float, typer.Option(help="Share of documents held out to measure the model.")]
Seed = Annotated[int, typer.Option(help="Shuffle and training seed.")]


@app.callback()
def filters() -> None:
    """Quality filters (a command group, so `gristmill filter train-classifier` keeps its name)."""


@app.command("train-classifier")
def train_classifier(
    positive: Annotated[list[str], typer.Option(help="Good documents: files or globs (jsonl, parquet, ...).")],
    negative: Annotated[list[str], typer.Option(help="Bad documents: files or globs.")],
    output: Annotated[Path, typer.Option(help="Where to save the fastText model (.bin).")] = Path("quality.bin"),
    epochs: Epochs = 5,
    dim: Dim = 256,
    lr: LearningRate = 0.1,
    word_ngrams: Annotated[int, typer.Option(help="Longest word n-gram used as a feature (2: bigrams).")] = 2,
    holdout_fraction: HoldoutFraction = 0.1,
    seed: Seed = 0,
) -> None:
    """Train a supervised fastText classifier (DCLM recipe) and report held-out precision, recall and F1."""
    from gristmill.filters.train_classifier import TrainClassifierConfig
    from gristmill.filters.train_classifier import train_classifier as train

    config = _config(
        TrainClassifierConfig, positive=positive, negative=negative, output=output, epochs=epochs, dim=dim, lr=lr,
        word_ngrams=word_ngrams, holdout_fraction=holdout_fraction, seed=seed,
    )
    scores = train(config)
    typer.echo(
        f"saved {output}; held out {scores.examples} documents: precision {scores.precision:.3f}, "
        f"recall {scores.recall:.3f}, F1 {scores.f1:.3f}"
    )


@app.command("train-langid")
def train_langid(
    inputs: Annotated[list[str], typer.Argument(help="Documents with a known language: files, folders or globs.")],
    output: Annotated[Path, typer.Option(help="Where to save the fastText model (.bin).")] = Path("models/lid.bin"),
    label_field: Annotated[str, typer.Option(help="Metadata field (or typed column) with the language.")] = "lang",
    epochs: Epochs = 5,
    dim: Dim = 16,
    lr: LearningRate = 0.5,
    min_docs_per_language: Annotated[int, typer.Option(help="Leave out languages with fewer documents.")] = 20,
    holdout_fraction: HoldoutFraction = 0.1,
    seed: Seed = 0,
) -> None:
    """Train a small fastText language-ID model (character n-grams) and report held-out accuracy per language."""
    from gristmill.filters.train_language_id import (
        TrainLanguageIdConfig,
        train_language_id,
    )

    config = _config(
        TrainLanguageIdConfig, inputs=inputs, output=output, label_field=label_field, epochs=epochs, dim=dim, lr=lr,
        min_docs_per_language=min_docs_per_language, holdout_fraction=holdout_fraction, seed=seed,
    )
    report = train_language_id(config)
    typer.echo(
        f"saved {output}: {len(report.languages)} languages from {sum(report.languages.values())} documents; "
        f"skipped {report.unlabelled} without {label_field!r} and {report.unreadable} unreadable records"
    )
    if report.left_out:
        typer.echo(
            f"left out {len(report.left_out)} languages with fewer than {min_docs_per_language} documents: "
            + ", ".join(f"{lang} ({n})" for lang, n in sorted(report.left_out.items()))
        )
    if report.accuracy is None:
        typer.echo("no documents held out: accuracy not measured")
        return
    typer.echo(f"held-out accuracy {report.accuracy:.3f} on {report.held_out} documents")
    typer.echo(f"{'language':<10}{'documents':>10}{'held out':>10}{'precision':>11}{'recall':>8}")
    for scores in report.per_language:
        typer.echo(
            f"{scores.label:<10}{report.languages[scores.label]:>10}{scores.support:>10}"
            f"{scores.precision:>11.3f}{scores.recall:>8.3f}"
        )


def _config(config_class: type[ConfigT], **options: object) -> ConfigT:
    """The command's config; a bad option value is a UserError, which the CLI prints as one line."""
    from gristmill.pipeline.errors import UserError

    try:
        return config_class(**options)
    except ValueError as err:
        raise UserError(str(err)) from None
