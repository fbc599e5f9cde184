import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from gristmill.tokenizer.manifest import SpecialIds, TokenManifest, shard_file_name, write_manifest
from gristmill.tokenizer.shard_format import TokenDataset, write_token_dataset, write_token_shard

EOS = 0


def random_documents(rng: np.random.Generator, count: int, vocab_size: int) -> list[np.ndarray]:
    """Documents of 1..60 tokens (EOS last), including single-token ones."""
    return [np.append(rng.integers(1, vocab_size, n), EOS) for n in rng.integers(0, 60, count)]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng()


@pytest.mark.parametrize("vocab_size, dtype", [(300, np.uint16), (2**16, np.uint16), (2**16 + 1, np.uint32)])
def test_round_trip(tmp_path: Path, rng: np.random.Generator, vocab_size: int, dtype: type) -> None:
    documents = random_documents(rng, 57, vocab_size)
    documents[3] = np.concatenate([[vocab_size - 1], documents[3]])  # the largest id must fit the dtype
    write_token_dataset(tmp_path, documents, vocab_size=vocab_size, eos_id=EOS, bos_id=1, docs_per_shard=10)
    dataset = TokenDataset(tmp_path)
    assert len(dataset) == 57 and len(dataset.manifest.shards) == 6
    assert dataset.num_tokens == sum(map(len, documents))
    assert (dataset.vocab_size, dataset.eos_id, dataset.bos_id, dataset.pad_id) == (vocab_size, EOS, 1, None)
    np.testing.assert_array_equal(dataset.lengths, [len(d) for d in documents])
    for i in rng.permutation(len(documents)):
        assert dataset.document(int(i)).dtype == dtype
        np.testing.assert_array_equal(dataset.document(int(i)), documents[i])
    for stored, original in zip(dataset, documents, strict=True):
        np.testing.assert_array_equal(stored, original)


def test_documents_are_read_only_views_of_the_mapped_files(tmp_path: Path, rng: np.random.Generator) -> None:
    write_token_dataset(tmp_path, random_documents(rng, 40, 500), vocab_size=500, eos_id=EOS, docs_per_shard=16)
    allocated = pa.total_allocated_bytes()
    dataset = TokenDataset(tmp_path)
    documents = list(dataset)
    assert pa.total_allocated_bytes() == allocated
    assert not documents[5].flags.writeable
    assert np.shares_memory(dataset.document(5), documents[5])


def test_lz4_shards_read_back(tmp_path: Path, rng: np.random.Generator) -> None:
    documents = random_documents(rng, 30, 1000)
    offsets = np.concatenate([[0], np.cumsum([len(d) for d in documents])])
    ids = [f"d{i}" for i in range(30)]
    entry = write_token_shard(tmp_path / shard_file_name(0), ids, (np.concatenate(documents), offsets), "uint16",
                              compression="lz4")
    manifest = TokenManifest(tokenizer_file=None, tokenizer_sha256=None, vocab_size=1000,
                             special_ids=SpecialIds(eos=EOS), shards=(entry,), compression="lz4")
    write_manifest(tmp_path, manifest)
    for stored, original in zip(TokenDataset(tmp_path), documents, strict=True):
        np.testing.assert_array_equal(stored, original)


def test_split_is_a_deterministic_partition_independent_of_sharding(tmp_path: Path, rng: np.random.Generator) -> None:
    documents = random_documents(rng, 400, 100)
    splits = []
    for docs_per_shard in (7, 400):
        directory = write_token_dataset(tmp_path / str(docs_per_shard), documents, vocab_size=100, eos_id=EOS,
                                        docs_per_shard=docs_per_shard, validation_fraction=0.25, seed=3)
        dataset = TokenDataset(directory)
        splits.append((dataset.split_indices("train"), dataset.split_indices("validation")))
    (train, validation), (train_again, validation_again) = splits
    np.testing.assert_array_equal(validation, validation_again)
    np.testing.assert_array_equal(np.sort(np.concatenate([train, validation])), np.arange(400))
    assert 60 < len(validation) < 140
    other_seed = write_token_dataset(tmp_path / "seed", documents, vocab_size=100, eos_id=EOS,
                                     validation_fraction=0.25, seed=4)
    assert not np.array_equal(TokenDataset(other_seed).split_indices("validation"), validation)
    with pytest.raises(ValueError, match="'test'"):
        dataset.split_indices("test")


def test_empty_dataset(tmp_path: Path) -> None:
    dataset = TokenDataset(write_token_dataset(tmp_path, [], vocab_size=10, eos_id=EOS))
    assert len(dataset) == 0 and dataset.num_tokens == 0 and list(dataset) == []
    assert len(dataset.split_indices("train")) == 0


@pytest.fixture
def dataset_dir(tmp_path: Path, rng: np.random.Generator) -> Path:
    return write_token_dataset(tmp_path, random_documents(rng, 30, 200), vocab_size=200, eos_id=EOS, docs_per_shard=10)


def test_missing_shard_is_named(dataset_dir: Path) -> None:
    (dataset_dir / "part-00001.arrow").unlink()
    with pytest.raises(ValueError, match="part-00001.arrow.*missing"):
        TokenDataset(dataset_dir)


def test_truncated_shard_is_named(dataset_dir: Path) -> None:
    shard = dataset_dir / "part-00002.arrow"
    shard.write_bytes(shard.read_bytes()[:-100])
    with pytest.raises(ValueError, match="part-00002.arrow.*truncated"):
        TokenDataset(dataset_dir)


def test_corrupted_shard_is_detected_by_checksum(dataset_dir: Path) -> None:
    shard = dataset_dir / "part-00000.arrow"
    data = bytearray(shard.read_bytes())
    data[len(data) // 3] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="part-00000.arrow.*corrupted"):
        TokenDataset(dataset_dir, verify_checksums=True)


def test_shard_replaced_by_another_is_a_count_mismatch(tmp_path: Path, rng: np.random.Generator) -> None:
    # shards of unequal token counts by construction (random lengths made equal counts now and then)
    documents = [np.append(rng.integers(1, 200, n), EOS) for n in [3] * 10 + [5] * 10]
    dataset_dir = write_token_dataset(tmp_path, documents, vocab_size=200, eos_id=EOS, docs_per_shard=10)
    (dataset_dir / "part-00001.arrow").write_bytes((dataset_dir / "part-00000.arrow").read_bytes())
    manifest = json.loads((dataset_dir / "manifest.json").read_text())
    manifest["shards"][1]["bytes"] = manifest["shards"][0]["bytes"]
    (dataset_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="part-00001.arrow: holds"):
        TokenDataset(dataset_dir)


@pytest.mark.parametrize("key, value, message", [
    ("num_tokens", 1, "num_tokens is 1"),
    ("format", "other/1", "format"),
    ("vocab_size", "big", "vocab_size has the wrong type"),
])
def test_bad_manifest_is_named(dataset_dir: Path, key: str, value: object, message: str) -> None:
    manifest = json.loads((dataset_dir / "manifest.json").read_text())
    manifest[key] = value
    (dataset_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=f"manifest.json: {message}"):
        TokenDataset(dataset_dir)


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        TokenDataset(tmp_path)


def test_wrong_tokenizer_is_refused(dataset_dir: Path) -> None:
    tokenizer = dataset_dir / "tokenizer.json"
    tokenizer.write_text('{"model": "a"}')
    manifest = json.loads((dataset_dir / "manifest.json").read_text())
    manifest["tokenizer"] = {"file": "tokenizer.json", "sha256": "0" * 64}
    (dataset_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="tokenizer.json: sha256 differs"):
        TokenDataset(dataset_dir)
    with pytest.raises(ValueError, match="expected abc"):
        TokenDataset(dataset_dir, tokenizer_sha256="abc")


def test_writer_refuses_ids_outside_the_dtype(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="outside uint16"):
        write_token_shard(tmp_path / "a.arrow", ["x"], (np.array([5, 70000]), np.array([0, 2])), "uint16")
    with pytest.raises(ValueError, match="do not fit uint16"):
        write_token_shard(tmp_path / "b.arrow", ["x"], pa.array([[5, 70000]]), "uint16")
    assert list(tmp_path.iterdir()) == []


def test_writer_accepts_a_list_array(tmp_path: Path) -> None:
    entry = write_token_shard(tmp_path / "a.arrow", pa.array(["x", "y"]), pa.array([[5, 0], [0]]), "uint32")
    assert (entry.num_documents, entry.num_tokens) == (2, 3)
    table = pa.ipc.open_file(tmp_path / "a.arrow").read_all()
    assert table.column("tokens").type == pa.list_(pa.uint32())
    assert table.column("num_tokens").to_pylist() == [2, 1]


@pytest.mark.parametrize("document, message", [
    (np.array([3, 4]), "ending with eos_id=0"),
    (np.array([], dtype=np.int64), "non-empty"),
    (np.array([10, 0]), "outside"),
])
def test_write_token_dataset_refuses_bad_documents(tmp_path: Path, document: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=rf"documents\[1\].*{message}"):
        write_token_dataset(tmp_path, [np.array([1, 0]), document], vocab_size=10, eos_id=EOS)
