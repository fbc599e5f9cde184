import json
from pathlib import Path

import numpy as np
import pytest
from tokenizers import AddedToken, Regex, Tokenizer, normalizers, pre_tokenizers

from gristmill.pipeline.errors import UserError
from gristmill.tokenizer.loading import load_encoder
from gristmill.tokenizer.tiktoken_bpe import GPT2_SPLIT, NotEquivalentError, tiktoken_encoder, tiktoken_encoding

from tokenizer_testdata import SAMPLE_CORPUS, random_texts
from test_tokenize_stage import dataset_files, texts_by_id, tokenize


def loaded(path: Path) -> Tokenizer:
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.encode_special_tokens = True
    return tokenizer


def saved(tokenizer: Tokenizer, path: Path) -> Path:
    tokenizer.save(str(path))
    return path


def reference_ids(tokenizer: Tokenizer, texts: list[str]) -> list[list[int]]:
    return [encoding.ids for encoding in tokenizer.encode_batch(texts, add_special_tokens=False)]


@pytest.mark.parametrize("threads", [1, 3])
def test_ids_equal_tokenizers_ids(tokenizer_file: Path, threads: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAYON_NUM_THREADS", str(threads))
    tokenizer = loaded(tokenizer_file)
    texts = random_texts(np.random.default_rng(), 200) + ["", " ", "x" * 50_000]
    texts += list(texts_by_id(SAMPLE_CORPUS).values())[:300]
    assert tiktoken_encoder(tiktoken_encoding(tokenizer))(texts) == reference_ids(tokenizer, texts)


def test_a_split_regex_before_byte_level_is_read(tokenizer_file: Path, tmp_path: Path) -> None:
    """The layout of newer byte-level tokenizers: the split is its own step and ByteLevel does no regex."""
    tokenizer = loaded(tokenizer_file)
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(GPT2_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tokenizer = loaded(saved(tokenizer, tmp_path / "split.json"))
    texts = random_texts(np.random.default_rng(), 100)
    assert tiktoken_encoder(tiktoken_encoding(tokenizer))(texts) == reference_ids(tokenizer, texts)


def with_unmerged_entry(spec: dict) -> dict:
    """A vocabulary entry no merge makes: `tokenizers` never emits it, tiktoken would for that exact piece."""
    vocab = spec["model"]["vocab"]
    word = next(token for token in ("Ġmill", "Ġgrist", "Ġthe") if token not in vocab)
    vocab[word] = max(vocab.values()) + 1
    return spec


def with_swapped_merges(spec: dict) -> dict:
    merges = spec["model"]["merges"]
    merges[10], merges[20] = merges[20], merges[10]
    return spec


@pytest.mark.parametrize(("change", "reason"), [
    (lambda spec: spec | {"normalizer": {"type": "NFKC"}}, "it has a normalizer: NFKC"),
    (lambda spec: spec | {"pre_tokenizer": {"type": "Whitespace"}}, "not a plain byte-level one"),
    (lambda spec: spec | {"pre_tokenizer": spec["pre_tokenizer"] | {"add_prefix_space": True}},
     "not a plain byte-level one"),
    (lambda spec: spec | {"model": spec["model"] | {"dropout": 0.1}}, "not a plain BPE"),
    (with_swapped_merges, "not above the previous merge's"),
    (with_unmerged_entry, "ids differ from tokenizers'"),
], ids=["normalizer", "whitespace", "prefix-space", "dropout", "merge-order", "unmerged-entry"])
def test_tokenizers_tiktoken_would_encode_otherwise_are_refused(tokenizer_file: Path, tmp_path: Path, change,
                                                                 reason: str) -> None:
    spec = change(json.loads(tokenizer_file.read_text()))
    path = tmp_path / "changed.json"
    path.write_text(json.dumps(spec))
    with pytest.raises(NotEquivalentError, match=reason):
        tiktoken_encoding(loaded(path))


def test_auto_falls_back_and_a_forced_tiktoken_names_why(tokenizer_file: Path, tmp_path: Path) -> None:
    tokenizer = loaded(tokenizer_file)
    tokenizer.normalizer = normalizers.NFKC()
    path = saved(tokenizer, tmp_path / "normalized.json")
    assert load_encoder(str(tokenizer_file), "auto")[1] == "tiktoken"
    assert load_encoder(str(path), "auto")[1] == "tokenizers"
    with pytest.raises(UserError, match=r"encoder tiktoken cannot encode .*normalized.json.*normalizer: NFKC"):
        load_encoder(str(path), "tiktoken")


def test_non_special_added_tokens_are_refused(tokenizer_file: Path, tmp_path: Path) -> None:
    tokenizer = loaded(tokenizer_file)
    tokenizer.add_tokens([AddedToken("gristmill", special=False)])
    with pytest.raises(NotEquivalentError, match="non-special added tokens"):
        tiktoken_encoding(loaded(saved(tokenizer, tmp_path / "added.json")))


def test_both_encoders_write_identical_datasets(tmp_path: Path, tokenizer_file: Path, small_corpus: Path) -> None:
    tokenize(small_corpus, tmp_path / "tiktoken", tokenizer_file, encoder="tiktoken")
    tokenize(small_corpus, tmp_path / "tokenizers", tokenizer_file, encoder="tokenizers")
    assert dataset_files(tmp_path / "tiktoken") == dataset_files(tmp_path / "tokenizers")
