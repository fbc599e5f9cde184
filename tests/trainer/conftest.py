"""Fixtures for trainer tests: small token datasets on disk and one CPU thread per test."""

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from gristmill.tokenizer.shard_format import write_token_dataset
from gristmill.trainer.config import TrainConfig
from gristmill.trainer.presets import tiny_debug
from trainer_testdata import EOS, VOCAB, learnable_documents


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread, and CI has two cores shared with other tests."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def make_dataset(tmp_path: Path) -> Callable[..., Path]:
    """Writes documents as a token dataset under tmp_path; returns its directory."""
    counter = iter(range(1000))

    def make(documents: list[np.ndarray], *, validation_fraction: float = 0.0, vocab_size: int = VOCAB) -> Path:
        return write_token_dataset(
            tmp_path / f"tokens-{next(counter)}", documents, vocab_size=vocab_size, eos_id=EOS,
            docs_per_shard=37, validation_fraction=validation_fraction,
        )

    return make


@pytest.fixture
def tiny_run(make_dataset: Callable[..., Path], tmp_path: Path) -> TrainConfig:
    """The tiny_debug preset on 400 learnable documents (10% held out for validation)."""
    cfg = tiny_debug()
    cfg.data.manifests = [make_dataset(learnable_documents(np.random.default_rng(0), 400), validation_fraction=0.1)]
    cfg.out_dir = tmp_path / "run"
    return cfg
