"""The loader: ranks and workers split the data exactly; a resumed loader hands out exactly the same batches,
under the same or another number of ranks and workers."""

from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from gristmill.trainer.config import DataConfig
from gristmill.trainer.loader import TrainLoader, check_datasets, validation_batches
from trainer_testdata import EOS, random_documents

SEQ_LEN = 32


def take(loader: TrainLoader, count: int) -> list[torch.Tensor]:
    batches = iter(loader)
    return [next(batches).input_ids for _ in range(count)]


def test_ranks_and_workers_together_read_each_document_once(make_dataset: Callable[..., Path]) -> None:
    """With one single-row batch per document (best-fit, buffer 1) the first epoch is easy to collect."""
    rng = np.random.default_rng()
    lengths = rng.integers(1, SEQ_LEN, 48)
    tokens = rng.permutation(int(lengths.sum())) % 255 + 1  # a document is recognized by its token multiset
    documents = [np.append(part, EOS) for part in np.split(tokens, np.cumsum(lengths)[:-1])]
    cfg = DataConfig(manifests=[make_dataset(documents)], seq_len=SEQ_LEN, packing="best_fit", best_fit_buffer=1,
                     num_workers=2)
    seen: Counter[tuple[int, ...]] = Counter()
    for rank in range(2):
        loader = TrainLoader(cfg, rows=1, pad_id=EOS, rank=rank, world_size=2, pin_memory=False)
        for row in take(loader, len(documents) // 2):
            seen[tuple(sorted(row[0, : int((row[0] != EOS).sum())].tolist()))] += 1
    assert seen == Counter(tuple(sorted(d[:-1].tolist())) for d in documents)


@pytest.mark.parametrize("workers", [0, 2])
def test_resumed_loader_continues_the_exact_token_stream(make_dataset: Callable[..., Path], workers: int) -> None:
    documents = random_documents(np.random.default_rng(), 120, 3 * SEQ_LEN)
    cfg = DataConfig(manifests=[make_dataset(documents)], seq_len=SEQ_LEN, packing="best_fit", best_fit_buffer=8,
                     num_workers=workers)
    loader = TrainLoader(cfg, rows=3, pad_id=EOS, rank=0, world_size=1, pin_memory=False)
    take(loader, 5)  # an odd count, so the next batch is not worker 0's turn
    state = loader.state_dict()
    expected = take(loader, 6)
    resumed = TrainLoader(cfg, rows=3, pad_id=EOS, rank=0, world_size=1, pin_memory=False)
    resumed.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(take(resumed, 6), expected, strict=True))


def test_ranks_deal_out_one_global_row_stream_that_resumes_under_any_rank_count(
    make_dataset: Callable[..., Path],
) -> None:
    documents = random_documents(np.random.default_rng(), 120, 3 * SEQ_LEN)
    cfg = DataConfig(manifests=[make_dataset(documents)], seq_len=SEQ_LEN, packing="best_fit", best_fit_buffer=8)
    stream = take(TrainLoader(cfg, rows=1, pad_id=EOS, rank=0, world_size=1, pin_memory=False), 18)

    with_workers = replace(cfg, num_workers=2)
    ranks = [TrainLoader(with_workers, rows=1, pad_id=EOS, rank=r, world_size=2, pin_memory=False) for r in (0, 1)]
    for rank, loader in enumerate(ranks):
        assert all(torch.equal(a, b) for a, b in zip(take(loader, 3), stream[rank:6:2], strict=True))
    state = ranks[0].state_dict()
    assert state == ranks[1].state_dict() and state["rows"] == 6

    resumed = TrainLoader(with_workers, rows=3, pad_id=EOS, rank=0, world_size=1, pin_memory=False)
    resumed.load_state_dict(state)
    expected = [torch.cat(stream[start : start + 3]) for start in range(6, 18, 3)]
    assert all(torch.equal(a, b) for a, b in zip(take(resumed, 4), expected, strict=True))


def test_validation_reads_the_validation_split_once(make_dataset: Callable[..., Path]) -> None:
    documents = random_documents(np.random.default_rng(), 200, SEQ_LEN)
    cfg = DataConfig(manifests=[make_dataset(documents, validation_fraction=0.2)], seq_len=SEQ_LEN)
    summary = check_datasets(cfg, model_vocab_size=256)
    batches = list(validation_batches(cfg, rows=2, pad_id=EOS, rank=0, world_size=1, limit=10_000))
    assert sum(b.real_tokens for b in batches) > 0
    assert sum(b.documents for b in batches) == summary.validation_documents


def test_dataset_checks_name_the_problem(make_dataset: Callable[..., Path], tmp_path: Path) -> None:
    path = make_dataset(random_documents(np.random.default_rng(), 10, SEQ_LEN), vocab_size=1000)
    with pytest.raises(ValueError, match="model.vocab_size"):
        check_datasets(DataConfig(manifests=[path]), model_vocab_size=256)
    with pytest.raises(ValueError, match="expected deadbeef"):
        check_datasets(DataConfig(manifests=[path], tokenizer_sha256="deadbeef"), model_vocab_size=1000)
    with pytest.raises(FileNotFoundError, match="no manifest.json"):
        check_datasets(DataConfig(manifests=[tmp_path / "nothing"]), model_vocab_size=1000)
    with pytest.raises(ValueError, match="data.manifests is empty"):
        check_datasets(DataConfig(), model_vocab_size=1000)
