import hashlib
import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer, normalizers

from gristmill.pipeline.errors import UserError
from gristmill.pipeline.readers import InputConfig, ReadErrors, expand_paths, read_documents
from gristmill.pipeline.run import run_recipe
from gristmill.pipeline.stats import StageStats
from gristmill.tokenizer.shard_format import TokenDataset
from gristmill.tokenizer.tokenize_stage import Tokenize, tokenize_recipe

from tokenizer_testdata import SAMPLE_CORPUS, write_documents


def tokenize(corpus: Path, out: Path, tokenizer: Path, *, kind: str = "local", workers: int = 1,
             **options: object) -> dict[str, StageStats]:
    recipe = tokenize_recipe([str(corpus)], out, input_options={"batch_size": 64},
                             executor={"kind": kind, "workers": workers}, tokenizer=str(tokenizer), **options)
    return run_recipe(recipe)


def dataset_files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "tokenize" / "dataset").iterdir())}


def texts_by_id(corpus: Path) -> dict[str, str]:
    errors = ReadErrors(StageStats(stage="read"), None)
    return {
        doc_id: text
        for path in expand_paths([str(corpus)])
        for batch in read_documents(path, InputConfig(), errors)
        for doc_id, text in zip(batch.column("id").to_pylist(), batch.column("text").to_pylist())
    }


def stored_documents(dataset: TokenDataset) -> dict[str, np.ndarray]:
    ids = [doc_id for chunk in dataset.ids() for doc_id in chunk.to_pylist()]
    return dict(zip(ids, dataset, strict=True))


def test_sample_corpus_round_trips_and_counts_match(tmp_path: Path, tokenizer_file: Path) -> None:
    stats = tokenize(SAMPLE_CORPUS, tmp_path / "out", tokenizer_file, validation_fraction=0.1)
    dataset = TokenDataset(tmp_path / "out/tokenize/dataset")
    originals = texts_by_id(SAMPLE_CORPUS)
    stored = stored_documents(dataset)
    empty = sum(text == "" for text in originals.values())
    assert len(stored) == len(originals) - empty == stats["tokenize"].docs_out
    assert stats["tokenize"].removed == Counter({"empty_text": empty} if empty else {})
    decoder = Tokenizer.from_file(str(dataset.tokenizer_path))
    ordered = list(stored)
    decoded = decoder.decode_batch([stored[i][:-1].tolist() for i in ordered], skip_special_tokens=False)
    assert all(text == originals[doc_id] for doc_id, text in zip(ordered, decoded))
    assert all(tokens[-1] == dataset.eos_id and dataset.eos_id not in tokens[:-1] for tokens in stored.values())
    manifest = json.loads((tmp_path / "out/tokenize/dataset/manifest.json").read_text())
    assert manifest["num_documents"] == len(dataset) == sum(s["num_documents"] for s in manifest["shards"])
    assert manifest["num_tokens"] == int(dataset.lengths.sum()) == sum(map(len, stored.values()))
    assert manifest["special_ids"] == {"bos": None, "eos": 0, "pad": None} and manifest["dtype"] == "uint16"
    assert 0.05 < len(dataset.split_indices("validation")) / len(dataset) < 0.15


def test_empty_documents_are_skipped_and_long_ones_kept_whole(tmp_path: Path, tokenizer_file: Path,
                                                               small_corpus: Path) -> None:
    truncating = Tokenizer.from_file(str(tokenizer_file))
    truncating.enable_truncation(16)
    truncating.save(str(tmp_path / "truncating.json"))
    stats = tokenize(small_corpus, tmp_path / "out", tmp_path / "truncating.json", bos_token="<|bos|>",
                     pad_token="<|pad|>")
    assert stats["tokenize"].removed == Counter({"empty_text": 3})
    dataset = TokenDataset(tmp_path / "out/tokenize/dataset")
    assert (len(dataset), dataset.bos_id, dataset.pad_id) == (117, 1, 2)
    stored = stored_documents(dataset)
    decoder = Tokenizer.from_file(str(tokenizer_file))
    assert decoder.decode(stored["s1-11"][:-1].tolist()) == "long document " * 3000
    assert 0 not in stored["s2-12"][:-1] and 2 not in stored["s2-12"]
    assert decoder.decode(stored["s2-12"][:-1].tolist(), skip_special_tokens=False).endswith("<|pad|> literally")


def test_documents_without_tokens_are_removed_with_their_eos(tmp_path: Path, tokenizer_file: Path) -> None:
    """A normalizer that strips whitespace maps blank documents to no tokens at all."""
    stripping = Tokenizer.from_file(str(tokenizer_file))
    stripping.normalizer = normalizers.Strip()
    stripping.save(str(tmp_path / "stripping.json"))
    texts = ["grist mill", "   ", "flour", "\n\n", "wheel"]
    write_documents(tmp_path / "corpus/part-00000.parquet", [f"d{i}" for i in range(len(texts))], texts)
    stats = tokenize(tmp_path / "corpus", tmp_path / "out", tmp_path / "stripping.json")
    assert stats["tokenize"].removed == Counter({"no_tokens": 2})
    dataset = TokenDataset(tmp_path / "out/tokenize/dataset")
    kept = [texts[0], texts[2], texts[4]]
    assert [doc.tolist() for doc in dataset] == [e.ids + [0] for e in stripping.encode_batch(kept)]


def test_shuffle_mixes_sources_into_target_sized_shards(tmp_path: Path, tokenizer_file: Path,
                                                       small_corpus: Path) -> None:
    tokenize(small_corpus, tmp_path / "ordered", tokenizer_file, shard_mb=0.002)
    tokenize(small_corpus, tmp_path / "shuffled", tokenizer_file, shard_mb=0.002, shuffle=True, seed=5)
    ordered = TokenDataset(tmp_path / "ordered/tokenize/dataset")
    shuffled = TokenDataset(tmp_path / "shuffled/tokenize/dataset")
    ordered_docs, shuffled_docs = stored_documents(ordered), stored_documents(shuffled)
    assert list(ordered_docs) == [f"s{s}-{i}" for s in range(3) for i in range(40) if i != 7]
    assert sorted(ordered_docs) == sorted(shuffled_docs) and list(ordered_docs) != list(shuffled_docs)
    assert all(np.array_equal(ordered_docs[i], shuffled_docs[i]) for i in ordered_docs)
    first_shard = list(shuffled_docs)[: shuffled.manifest.shards[0].num_documents]
    assert len({doc_id.split("-")[0] for doc_id in first_shard}) == 3
    for dataset in (ordered, shuffled):
        starts = np.cumsum([0] + [entry.num_documents for entry in dataset.manifest.shards])
        assert len(starts) > 4
        for start, end in zip(starts[:-1], starts[1:]):
            assert end > start and dataset.lengths[start : end - 1].sum() * 2 < 0.002 * 2**20


def test_lz4_dataset_holds_the_same_documents(tmp_path: Path, tokenizer_file: Path, small_corpus: Path) -> None:
    tokenize(small_corpus, tmp_path / "plain", tokenizer_file)
    tokenize(small_corpus, tmp_path / "lz4", tokenizer_file, compression="lz4")
    plain = TokenDataset(tmp_path / "plain/tokenize/dataset")
    compressed = TokenDataset(tmp_path / "lz4/tokenize/dataset")
    assert compressed.manifest.compression == "lz4"
    assert compressed.manifest.shards[0].bytes < plain.manifest.shards[0].bytes
    for a, b in zip(plain, compressed, strict=True):
        np.testing.assert_array_equal(a, b)


def test_rerun_and_resume_after_a_failure_give_identical_files(tmp_path: Path, tokenizer_file: Path,
                                                               small_corpus: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    tokenize(small_corpus, tmp_path / "clean", tokenizer_file, shuffle=True)
    clean = dataset_files(tmp_path / "clean")
    process = Tokenize.process

    def fail_on_third_shard(self, batch, ctx):  # noqa: ANN001, ANN202
        if ctx.shard == 2:
            raise RuntimeError("killed")
        return process(self, batch, ctx)

    monkeypatch.setattr(Tokenize, "process", fail_on_third_shard)
    with pytest.raises(RuntimeError, match="killed"):
        tokenize(small_corpus, tmp_path / "out", tokenizer_file, shuffle=True)
    assert not (tmp_path / "out/tokenize/dataset").exists()
    finished = tmp_path / "out/tokenize/done/part-00000.json"
    stamp = finished.stat().st_mtime_ns
    monkeypatch.setattr(Tokenize, "process", process)
    tokenize(small_corpus, tmp_path / "out", tokenizer_file, shuffle=True)
    assert finished.stat().st_mtime_ns == stamp, "a finished shard was tokenized again"
    assert dataset_files(tmp_path / "out") == clean
    (tmp_path / "out/tokenize/dataset/part-00000.arrow").unlink()
    tokenize(small_corpus, tmp_path / "out", tokenizer_file, shuffle=True)
    assert dataset_files(tmp_path / "out") == clean


def test_only_the_dataset_stays_and_a_rerun_keeps_it(tmp_path: Path, tokenizer_file: Path, small_corpus: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    stats = tokenize(small_corpus, tmp_path / "out", tokenizer_file)
    stage_dir = tmp_path / "out/tokenize"
    assert not list(stage_dir.glob("part-*.arrow")), "per-input shards were left beside the dataset"
    manifest = stage_dir / "dataset/manifest.json"
    stamp, files = manifest.stat().st_mtime_ns, dataset_files(tmp_path / "out")

    def never(self, batch, ctx):  # noqa: ANN001, ANN202
        raise AssertionError("a finalized dataset was tokenized again")

    monkeypatch.setattr(Tokenize, "process", never)
    assert tokenize(small_corpus, tmp_path / "out", tokenizer_file)["tokenize"] == stats["tokenize"]
    assert manifest.stat().st_mtime_ns == stamp and dataset_files(tmp_path / "out") == files


def test_a_rerun_with_a_changed_tokenizer_file_tokenizes_again(tmp_path: Path, tokenizer_file: Path,
                                                               small_corpus: Path) -> None:
    local_copy = tmp_path / "tokenizer.json"
    local_copy.write_bytes(tokenizer_file.read_bytes())
    tokenize(small_corpus, tmp_path / "out", local_copy)
    local_copy.write_text(json.dumps(json.loads(local_copy.read_text()), indent=1))  # same tokenizer, new bytes
    tokenize(small_corpus, tmp_path / "out", local_copy)
    dataset = TokenDataset(tmp_path / "out/tokenize/dataset")
    assert dataset.tokenizer_sha256 == hashlib.sha256(local_copy.read_bytes()).hexdigest()


def test_local_and_ray_write_identical_datasets(tmp_path: Path, tokenizer_file: Path, small_corpus: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    ray = pytest.importorskip("ray")
    monkeypatch.setenv("RAY_AUTH_MODE", os.environ.get("RAY_AUTH_MODE", "disabled"))
    tokenize(small_corpus, tmp_path / "local", tokenizer_file, shuffle=True)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        tokenize(small_corpus, tmp_path / "ray", tokenizer_file, kind="ray", workers=2, shuffle=True)
    finally:
        ray.shutdown()
    assert dataset_files(tmp_path / "ray") == dataset_files(tmp_path / "local")


def test_unknown_special_token_is_named(tmp_path: Path, tokenizer_file: Path, small_corpus: Path) -> None:
    with pytest.raises(UserError, match=r"eos_token: '</s>' is not in .*'<\|endoftext\|>'"):
        tokenize(small_corpus, tmp_path / "out", tokenizer_file, eos_token="</s>")


def test_bad_options_fail_before_any_work(tmp_path: Path, tokenizer_file: Path, small_corpus: Path) -> None:
    with pytest.raises(UserError, match="shard_mb must be > 0"):
        tokenize(small_corpus, tmp_path / "out", tokenizer_file, shard_mb=0)
    with pytest.raises(UserError, match="encode_threads must be >= 1 or None, got 0"):
        tokenize(small_corpus, tmp_path / "out", tokenizer_file, encode_threads=0)
    with pytest.raises(UserError, match="no such file 'missing.json'"):
        tokenize(small_corpus, tmp_path / "out", Path("missing.json"))
    assert not (tmp_path / "out").exists()


def test_any_tokenizer_file_works_and_large_vocabularies_use_uint32(tmp_path: Path, small_corpus: Path) -> None:
    """A word-level tokenizer not made by us, with 70,000 tokens and `</s>` as EOS."""
    from tokenizers import AddedToken, models, pre_tokenizers

    words = sorted({w for text in texts_by_id(small_corpus).values() for w in text.split()})
    vocab = {"[UNK]": 0} | {f"filler{i}": i + 1 for i in range(70_000 - 1 - len(words))}
    vocab |= {word: len(vocab) + i for i, word in enumerate(words)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.add_special_tokens([AddedToken("</s>", special=True)])
    tokenizer.save(str(tmp_path / "word_level.json"))
    tokenize(small_corpus, tmp_path / "out", tmp_path / "word_level.json", eos_token="</s>")
    dataset = TokenDataset(tmp_path / "out/tokenize/dataset")
    assert (dataset.manifest.dtype, dataset.vocab_size, dataset.eos_id) == ("uint32", 70_001, 70_000)
    stored = stored_documents(dataset)
    assert [vocab[w] for w in texts_by_id(small_corpus)["s0-3"].split()] == stored["s0-3"][:-1].tolist()
    assert all(tokens[-1] == 70_000 for tokens in stored.values())
