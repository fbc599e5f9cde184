"""Document streams: exact partition over shards, a new order per epoch, weighted mixing, exact resume."""

from collections import Counter
from typing import Any

import numpy as np
import pytest

from gristmill.trainer.data import DocumentStream


class IdentityDocuments:
    """Document i is the one-token array [i], so a stream's output names the documents it read."""

    def document(self, index: int) -> np.ndarray:
        return np.array([index])


def stream(shard: int, num_shards: int, indices: np.ndarray, **kwargs: Any) -> DocumentStream:
    return DocumentStream([IdentityDocuments()], [indices], shard=shard, num_shards=num_shards, seed=7, **kwargs)


def read(source: DocumentStream, count: int) -> list[int]:
    return [int(source.next_document()[0]) for _ in range(count)]


@pytest.mark.parametrize("num_shards", [1, 3, 4])
def test_shards_of_an_epoch_are_disjoint_and_cover_every_document(num_shards: int) -> None:
    indices = np.random.default_rng().choice(10_000, size=101, replace=False)
    for epoch in range(2):
        seen: Counter[int] = Counter()
        for shard in range(num_shards):
            source = stream(shard, num_shards, indices)
            share = len(range(shard, len(indices), num_shards))
            read(source, share * epoch)
            seen.update(read(source, share))
        assert seen == Counter(indices.tolist())


def test_each_epoch_has_its_own_order() -> None:
    source = stream(0, 1, np.arange(50))
    first, second = read(source, 50), read(source, 50)
    assert sorted(first) == sorted(second) == list(range(50)) and first != second


def test_finite_stream_reads_each_source_once_in_order() -> None:
    source = DocumentStream(
        [IdentityDocuments(), IdentityDocuments()], [np.arange(5), np.arange(10, 13)],
        shard=0, num_shards=1, seed=0, shuffle=False, loop=False,
    )
    assert read(source, 8) == [0, 1, 2, 3, 4, 10, 11, 12]
    with pytest.raises(StopIteration):
        source.next_document()


def test_mixing_follows_the_weights() -> None:
    source = DocumentStream(
        [IdentityDocuments(), IdentityDocuments()], [np.arange(0, 100), np.arange(1000, 1100)],
        shard=1, num_shards=2, seed=3, weights=[3.0, 1.0],
    )
    from_first = sum(d < 1000 for d in read(source, 4000))
    assert 0.72 < from_first / 4000 < 0.78


def test_resume_continues_the_same_stream() -> None:
    def make() -> DocumentStream:
        return DocumentStream(
            [IdentityDocuments(), IdentityDocuments()], [np.arange(0, 30), np.arange(100, 117)],
            shard=0, num_shards=2, seed=11, weights=[1.0, 2.0],
        )

    source = make()
    read(source, int(np.random.default_rng().integers(1, 60)))
    state = source.state_dict()
    expected = read(source, 50)
    resumed = make()
    resumed.load_state_dict(state)
    assert read(resumed, 50) == expected


def test_resume_under_another_sharding_is_refused() -> None:
    state = stream(0, 2, np.arange(10)).state_dict()
    with pytest.raises(ValueError, match="only continues the shard it was taken from"):
        stream(0, 3, np.arange(10)).load_state_dict(state)


def test_more_shards_than_documents_is_refused() -> None:
    with pytest.raises(ValueError, match="fewer than the 8 data shards"):
        stream(0, 8, np.arange(5))
