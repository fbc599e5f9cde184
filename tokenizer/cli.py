"""`gristmill tokenizer train` and `gristmill tokenize` (the lead mounts `app` and `tokenize` on the root CLI).

Options left out keep the defaults of the config dataclasses, so the CLI, recipes and tests share one set of
defaults and one validation.
"""

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from gristmill.pipeline.config import build_config

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

InputsArgument = Annotated[
    list[str], typer.Argument(help="Documents: files, globs, or a pipeline stage folder (its part-* files).")
]
NONE_HELP = "; an empty string for none"


def stage_inputs(inputs: list[str]) -> list[str]:
    """A stage folder means its `part-*` shards, not its stats/ and removed/ side outputs."""
    return [f"{p.rstrip('/')}/part-*" if Path(p).is_dir() and any(Path(p).glob("part-*")) else p for p in inputs]


def given(**options: Any) -> dict[str, Any]:
    """The options the user set; an empty string turns an optional token off."""
    return {name: (None if value == "" else value) for name, value in options.items() if value is not None}


# A callback keeps `train` a sub-command however the app is mounted (typer collapses one-command apps).
@app.callback()
def tokenizer_commands() -> None:
    """Train tokenizers."""


@app.command()
def train(
    inputs: InputsArgument,
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write tokenizer.json.")],
    vocab_size: Annotated[Optional[int], typer.Option(help="Vocabulary size, special tokens included.")] = None,
    sample_fraction: Annotated[Optional[float], typer.Option(help="Share of documents to learn from.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of the sample.")] = None,
    min_frequency: Annotated[Optional[int], typer.Option(help="Minimum count of a merged pair.")] = None,
    eos_token: Annotated[Optional[str], typer.Option(help="End-of-document token (id 0).")] = None,
    bos_token: Annotated[Optional[str], typer.Option(help="Beginning-of-document token" + NONE_HELP)] = None,
    pad_token: Annotated[Optional[str], typer.Option(help="Padding token" + NONE_HELP)] = None,
) -> None:
    """Train a byte-level BPE tokenizer on documents (a pipeline output or raw files)."""
    from gristmill.tokenizer.train_bpe import BpeTrainingConfig, train_bpe

    options = given(vocab_size=vocab_size, sample_fraction=sample_fraction, seed=seed, min_frequency=min_frequency,
                    eos_token=eos_token, bos_token=bos_token, pad_token=pad_token)
    config = build_config(BpeTrainingConfig, options, where="tokenizer train")
    train_bpe(stage_inputs(inputs), output, config)
    typer.echo(f"tokenizer: {output}")


def tokenize(
    inputs: InputsArgument,
    tokenizer: Annotated[Path, typer.Option(help="tokenizer.json (ours or any Hugging Face tokenizers file).")],
    output: Annotated[str, typer.Option("--output", "-o", help="Run folder; the dataset is <output>/tokenize/dataset.")],
    executor: Annotated[Optional[str], typer.Option(help="local or ray.")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Parallel shard tasks.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Documents per encode batch.")] = None,
    encoder: Annotated[
        Optional[str], typer.Option(help="auto (tiktoken where it gives the same ids), tokenizers or tiktoken.")
    ] = None,
    encode_threads: Annotated[
        Optional[int], typer.Option(help="Encoder threads per worker (default: its share of the cores).")
    ] = None,
    shard_mb: Annotated[Optional[float], typer.Option(help="Target size of the final shards (MiB).")] = None,
    shuffle: Annotated[Optional[bool], typer.Option(help="Shuffle documents across shards (seeded).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of the shuffle and the split.")] = None,
    validation_fraction: Annotated[Optional[float], typer.Option(help="Share of documents for validation.")] = None,
    compression: Annotated[Optional[str], typer.Option(help="none or lz4.")] = None,
    eos_token: Annotated[Optional[str], typer.Option(help="Token appended to every document.")] = None,
    bos_token: Annotated[Optional[str], typer.Option(help="BOS token to record in the manifest.")] = None,
    pad_token: Annotated[Optional[str], typer.Option(help="PAD token to record in the manifest.")] = None,
) -> None:
    """Tokenize documents into Arrow token shards with a manifest. Rerunning resumes."""
    from gristmill.pipeline.run import run_recipe
    from gristmill.pipeline.stats_table import print_stats
    from gristmill.tokenizer.tokenize_stage import DATASET_FOLDER, Tokenize, tokenize_recipe

    recipe = tokenize_recipe(
        stage_inputs(inputs), output, input_options=given(batch_size=batch_size),
        executor=given(kind=executor, workers=workers), tokenizer=str(tokenizer),
        **given(shard_mb=shard_mb, shuffle=shuffle, seed=seed, validation_fraction=validation_fraction,
                compression=compression, eos_token=eos_token, bos_token=bos_token, pad_token=pad_token,
                encoder=encoder, encode_threads=encode_threads),
    )
    print_stats(run_recipe(recipe))
    typer.echo(f"token dataset: {Path(output) / Tokenize.name / DATASET_FOLDER}")
