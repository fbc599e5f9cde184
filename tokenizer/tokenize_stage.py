"""The `tokenize` stage: documents to token shards, then (once, on the driver) the final token dataset.

Per input shard, batches are encoded in parallel (tiktoken where it gives the tokenizer's ids, else
`tokenizers`' batch encoder), EOS is appended and the result is written as `OUT/<stage>/part-XXXXX.arrow` by
the pipeline (so resume and both executors work as for every stage). `finalize` then lays those shards out into `OUT/<stage>/dataset/`: shards of about
`shard_mb`, optionally shuffled across sources, with the tokenizer and `manifest.json`, and deletes the
per-input shards, so a finished run holds the tokens once.
"""

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gristmill.pipeline.config import build_config
from gristmill.pipeline.errors import UserError
from gristmill.pipeline.log import get_logger
from gristmill.pipeline.recipe import Recipe
from gristmill.pipeline.stage import ShardContext, Stage
from gristmill.tokenizer.batch_encoder import encode_with_eos, set_encoder_threads
from gristmill.tokenizer.dataset import MappedShard, ShardSequence, TokenDataset
from gristmill.tokenizer.loading import EncoderChoice, load_encoder, load_tokenizer
from gristmill.tokenizer.manifest import (
    MANIFEST_NAME,
    SpecialIds,
    TokenManifest,
    file_sha256,
    token_dtype,
    write_manifest,
)
from gristmill.tokenizer.shard_format import token_batch
from gristmill.tokenizer.shuffle import reshard

log = get_logger(__name__)

DATASET_FOLDER = "dataset"
TOKENIZER_FILE = "tokenizer.json"


@dataclass(kw_only=True)
class TokenizeConfig:
    tokenizer: str
    """A tokenizer.json: one from `gristmill tokenizer train` or any Hugging Face `tokenizers` file."""
    eos_token: str = "<|endoftext|>"
    """Appended to every document; must be in the tokenizer's vocabulary."""
    bos_token: str | None = None
    """Recorded in the manifest for the trainer (not inserted); must be in the vocabulary when set."""
    pad_token: str | None = None
    """Recorded in the manifest for the trainer; must be in the vocabulary when set."""
    shard_mb: float = 256.0
    """Target size of the final shards, in MiB of tokens."""
    shuffle: bool = False
    """Shuffle documents across all final shards (seeded), so reading shards in order mixes sources."""
    seed: int = 0
    """Seed of the shuffle and of the train/validation split."""
    validation_fraction: float = 0.01
    """Share of documents (by a seeded hash of their id) in the validation split."""
    compression: Literal["none", "lz4"] = "none"
    """`lz4` makes smaller final shards that are decompressed batch by batch instead of mapped zero-copy."""
    encoder: EncoderChoice = "auto"
    """`auto` encodes with tiktoken where it gives `tokenizers`' ids (a plain byte-level BPE, checked on a probe at
    load; ~4x less CPU per token), else with `tokenizers`; `tokenizers` or `tiktoken` forces one."""
    encode_threads: int | None = None
    """Encoder threads per worker process (RAYON_NUM_THREADS); None takes the executor's share per worker (all
    cores in-process, cores / workers in a local pool, 1 per Ray task)."""

    def __post_init__(self) -> None:
        if not Path(self.tokenizer).is_file():
            raise ValueError(f"tokenizer: no such file {self.tokenizer!r}")
        if self.encode_threads is not None and self.encode_threads < 1:
            raise ValueError(f"encode_threads must be >= 1 or None, got {self.encode_threads}")
        if self.shard_mb <= 0:
            raise ValueError(f"shard_mb must be > 0, got {self.shard_mb}")
        if not 0.0 <= self.validation_fraction <= 1.0:
            raise ValueError(f"validation_fraction must be in [0, 1], got {self.validation_fraction}")


class Tokenize(Stage):
    name = "tokenize"
    Config = TokenizeConfig
    requires = ("tokenizers",)
    output_format = "arrow"

    def __init__(self, config: TokenizeConfig) -> None:
        super().__init__(config)
        self.setup()

    def setup(self) -> None:
        """Loads the tokenizer; done at construction, so a missing special token fails before any work."""
        self.tokenizer, vocab = load_tokenizer(self.config.tokenizer)
        self.vocab_size = max(vocab.values()) + 1
        self.dtype = token_dtype(self.vocab_size)
        self.special_ids = SpecialIds(
            eos=self._token_id(vocab, "eos_token"),
            bos=self._token_id(vocab, "bos_token"),
            pad=self._token_id(vocab, "pad_token"),
        )
        if self.config.encode_threads is not None:
            set_encoder_threads(self.config.encode_threads)
        self.encode, encoder = load_encoder(self.config.tokenizer, self.config.encoder)
        log.debug("tokenize: encoding with %s", encoder)

    def _token_id(self, vocab: dict[str, int], option: str) -> int | None:
        token = getattr(self.config, option)
        if token is None:
            return None
        if token not in vocab:
            special = sorted(t.content for t in self.tokenizer.get_added_tokens_decoder().values())
            raise UserError(f"{option}: {token!r} is not in {self.config.tokenizer} (its special tokens: {special})")
        return vocab[token]

    def process(self, batch: pa.RecordBatch, ctx: ShardContext) -> pa.RecordBatch:
        """Encodes every non-empty document whole (see `load_tokenizer`) and appends EOS."""
        empty = pc.equal(pc.binary_length(batch.column("text")), 0)
        if pc.any(empty).as_py():
            ctx.remove(batch.filter(empty), "empty_text")
            batch = batch.filter(pc.invert(empty))
        tokens, lengths = encode_with_eos(self.encode, batch.column("text").to_pylist(), eos=self.special_ids.eos,
                                          dtype=self.dtype)
        if not lengths.all():
            no_tokens = lengths == 0
            ctx.remove(batch.filter(pa.array(no_tokens)), "no_tokens")
            batch = batch.filter(pa.array(~no_tokens))
            tokens = tokens[np.repeat(~no_tokens, lengths + 1)]
            lengths = lengths[~no_tokens]
        offsets = np.zeros(len(lengths) + 1, np.int64)
        np.cumsum(lengths + 1, out=offsets[1:])
        return token_batch(batch.column("id"), (tokens, offsets), self.dtype)

    def finalize(self, stage_dir: Path, outputs: list[Path]) -> None:
        """Writes `stage_dir/dataset/`; its manifest goes last, so the dataset is whole once it exists. The
        per-input shards are deleted after it (a rerun checks the dataset instead: `is_finalized`)."""
        if any(path.parent != stage_dir or path.suffix != ".arrow" for path in outputs):
            raise UserError(f"stage {stage_dir.name!r} (tokenize) must be the last stage of a recipe")
        directory = stage_dir / DATASET_FOLDER
        (directory / MANIFEST_NAME).unlink(missing_ok=True)
        source = ShardSequence([MappedShard(path, self.dtype) for path in sorted(outputs)])
        compression = None if self.config.compression == "none" else self.config.compression
        shards = reshard(
            source,
            directory,
            dtype=self.dtype,
            shard_bytes=int(self.config.shard_mb * 2**20),
            seed=self.config.seed if self.config.shuffle else None,
            compression=compression,
        )
        shutil.copyfile(self.config.tokenizer, directory / TOKENIZER_FILE)
        manifest = TokenManifest(
            tokenizer_file=TOKENIZER_FILE,
            tokenizer_sha256=file_sha256(directory / TOKENIZER_FILE),
            vocab_size=self.vocab_size,
            special_ids=self.special_ids,
            shards=tuple(shards),
            compression=compression,
            validation_fraction=self.config.validation_fraction,
            seed=self.config.seed,
        )
        write_manifest(directory, manifest)
        for path in outputs:
            path.unlink(missing_ok=True)
        log.info("token dataset: %s (%d documents, %d tokens, %d shards)", directory, manifest.num_documents,
                 manifest.num_tokens, len(shards))

    def is_finalized(self, stage_dir: Path) -> bool:
        """The dataset exists, matches its manifest (files, sizes) and was made with this tokenizer file."""
        try:
            dataset = TokenDataset(stage_dir / DATASET_FOLDER)
        except (OSError, ValueError):
            return False
        return dataset.tokenizer_sha256 == file_sha256(Path(self.config.tokenizer))


def tokenize_recipe(
    paths: list[str],
    output: str | Path,
    *,
    input_options: dict[str, Any] | None = None,
    executor: dict[str, Any] | None = None,
    keep_removed: bool = True,
    **stage_options: Any,
) -> Recipe:
    """A recipe of the tokenize stage alone (what `gristmill tokenize` runs); `stage_options` are
    `TokenizeConfig` fields, plus `name` for the stage folder. The dataset lands in `output/<name>/dataset`."""
    return build_config(Recipe, {
        "input": {"paths": paths, **(input_options or {})},
        "output": {"path": str(output), "keep_removed": keep_removed},
        "executor": executor or {},
        "stages": [{"type": Tokenize.name, **stage_options}],
    })
