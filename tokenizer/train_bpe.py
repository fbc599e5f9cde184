"""Trains a byte-level BPE tokenizer (Hugging Face `tokenizers`) on documents a pipeline wrote.

Byte-level means every string encodes and decodes back exactly, with no unknown token, which the token
shards rely on (decode(tokens) == text). The sample is a seeded hash of document ids, so the same inputs
and seed always train the same tokenizer.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from gristmill.pipeline.readers import InputConfig, ReadErrors, expand_paths, read_documents
from gristmill.pipeline.log import get_logger
from gristmill.pipeline.stats import StageStats
from gristmill.tokenizer.manifest import id_in_fraction

log = get_logger(__name__)

BYTE_ALPHABET_SIZE = 256


@dataclass(kw_only=True)
class BpeTrainingConfig:
    vocab_size: int = 32768
    """Tokens in the final vocabulary, special tokens included; up to 65,536 keeps shards at uint16."""
    eos_token: str = "<|endoftext|>"
    """Appended to every document by the tokenize stage."""
    bos_token: str | None = "<|bos|>"
    pad_token: str | None = "<|pad|>"
    sample_fraction: float = 1.0
    """Share of documents (chosen by a seeded hash of their id) that the merges are learned from."""
    seed: int = 0
    min_frequency: int = 2
    """A pair must occur this often to become a merge."""

    @property
    def special_tokens(self) -> list[str]:
        """In id order: EOS is id 0, then BOS and PAD when set."""
        return [t for t in (self.eos_token, self.bos_token, self.pad_token) if t is not None]

    def __post_init__(self) -> None:
        smallest = BYTE_ALPHABET_SIZE + len(self.special_tokens)
        if not smallest <= self.vocab_size <= 2**32:
            raise ValueError(f"vocab_size must be in {smallest}..2**32 (bytes + special tokens), got {self.vocab_size}")
        if not 0.0 < self.sample_fraction <= 1.0:
            raise ValueError(f"sample_fraction must be in (0, 1], got {self.sample_fraction}")
        if len(set(self.special_tokens)) != len(self.special_tokens):
            raise ValueError(f"special tokens must differ, got {self.special_tokens}")
        if self.min_frequency < 1:
            raise ValueError(f"min_frequency must be >= 1, got {self.min_frequency}")


def sampled_texts(paths: list[str], config: BpeTrainingConfig) -> Iterator[str]:
    """Texts of the sampled documents, streamed file by file; unreadable records are skipped and counted."""
    stats = StageStats(stage="tokenizer-train")
    for path in expand_paths(paths):
        for batch in read_documents(path, InputConfig(), ReadErrors(stats, None)):
            for doc_id, text in zip(batch.column("id").to_pylist(), batch.column("text").to_pylist()):
                if config.sample_fraction == 1.0 or id_in_fraction(doc_id, fraction=config.sample_fraction,
                                                                    seed=config.seed):
                    yield text
    if stats.docs_errors:
        log.warning("skipped %d unreadable records: %s", stats.docs_errors, dict(stats.errors))


def train_bpe(paths: list[str], output: str | Path, config: BpeTrainingConfig) -> Path:
    """Learns merges from the documents at `paths` (files, globs, folders) and saves `output` (tokenizer.json)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=config.vocab_size,
        min_frequency=config.min_frequency,
        special_tokens=config.special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(sampled_texts(paths, config), trainer=trainer)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(output))
    log.info("trained a %d-token BPE vocabulary: %s", tokenizer.get_vocab_size(), output)
    return output
