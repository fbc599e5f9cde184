"""Fixtures for tokenizer tests: a BPE tokenizer trained once on the sample corpus, and small corpora."""

from pathlib import Path

import pytest

from gristmill.tokenizer.train_bpe import BpeTrainingConfig, train_bpe

from tokenizer_testdata import SAMPLE_CORPUS, write_documents


@pytest.fixture(scope="session")
def tokenizer_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1,000-token byte-level BPE learned from a fifth of the sample corpus."""
    output = tmp_path_factory.mktemp("tokenizer") / "tokenizer.json"
    return train_bpe([str(SAMPLE_CORPUS)], output, BpeTrainingConfig(vocab_size=1000, sample_fraction=0.2))


@pytest.fixture
def small_corpus(tmp_path: Path) -> Path:
    """Three parquet files of 40 documents each, one source per file; a few empty, one long, one quoting special tokens, some non-ASCII."""
    root = tmp_path / "corpus"
    words = "grist mill stone wheat flour sack river wheel Müller 磨坊 мельница".split()
    for source in range(3):
        texts = [" ".join(words[(source + i + j) % len(words)] for j in range(1 + (i * 13) % 50)) for i in range(40)]
        texts[7] = ""
        texts[11] = "long document " * 3000
        texts[12] = "text that quotes <|endoftext|> and <|pad|> literally"
        write_documents(root / f"part-{source:05d}.parquet", [f"s{source}-{i}" for i in range(40)], texts)
    return root
