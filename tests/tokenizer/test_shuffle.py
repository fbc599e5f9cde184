from pathlib import Path

import numpy as np
import pytest

from gristmill.tokenizer.dataset import MappedShard, ShardSequence
from gristmill.tokenizer.shard_format import TokenShardWriter, write_token_dataset
from gristmill.tokenizer.shuffle import reshard, shard_ranges


def test_shard_ranges_cut_where_a_document_starts_past_the_target() -> None:
    # documents start at bytes 0, 6, 12, 18, 38, 40: shards [0, 12), [12, 24), then [36, 48) (none starts in [24, 36))
    assert shard_ranges(np.array([3, 3, 3, 10, 1, 1]), token_bytes=2, shard_bytes=12) == [(0, 2), (2, 4), (4, 6)]
    assert shard_ranges(np.array([], dtype=np.int64), token_bytes=2, shard_bytes=12) == []


def test_reshard_keeps_every_document_and_is_seeded(tmp_path: Path) -> None:
    rng = np.random.default_rng()
    documents = [np.append(rng.integers(1, 50, n), 0) for n in rng.integers(0, 30, 200)]
    write_token_dataset(tmp_path / "in", documents, vocab_size=50, eos_id=0, docs_per_shard=70)
    source = ShardSequence([MappedShard(p, "uint16") for p in sorted((tmp_path / "in").glob("part-*.arrow"))])
    orders = []
    for name, seed in (("a", 7), ("b", 7), ("c", None)):
        entries = reshard(source, tmp_path / name, dtype="uint16", shard_bytes=400, seed=seed, compression=None)
        shuffled = ShardSequence([MappedShard(tmp_path / name / e.file, "uint16") for e in entries])
        ids = [int(doc_id[4:]) for chunk in shuffled.ids() for doc_id in chunk.to_pylist()]
        assert sorted(ids) == list(range(200))
        assert all(np.array_equal(doc, documents[i]) for i, doc in zip(ids, shuffled, strict=True))
        orders.append(ids)
    assert orders[0] == orders[1] != orders[2] == list(range(200))


def test_span_equals_its_documents_across_batch_and_shard_boundaries(tmp_path: Path) -> None:
    rng = np.random.default_rng()
    documents = [np.append(rng.integers(1, 50, n), 0) for n in rng.integers(0, 30, 100)]
    for shard, first in enumerate(range(0, 100, 30)):
        with TokenShardWriter(tmp_path / f"part-{shard}.arrow", "uint16") as writer:
            for start in range(first, min(first + 30, 100), 7):
                batch = documents[start : min(start + 7, first + 30, 100)]
                offsets = np.concatenate([[0], np.cumsum([len(d) for d in batch])])
                writer.write([str(i) for i in range(len(batch))], (np.concatenate(batch), offsets))
            writer.close()
    source = ShardSequence([MappedShard(tmp_path / f"part-{shard}.arrow", "uint16") for shard in range(4)])
    for start, end in [(0, 100), (29, 31), (5, 6), *(sorted(rng.choice(101, 2, replace=False)) for _ in range(20))]:
        np.testing.assert_array_equal(source.span(start, end), np.concatenate(documents[start:end]))
    with pytest.raises(IndexError, match=r"\[7, 7\) empty or out of range"):
        source.span(7, 7)
