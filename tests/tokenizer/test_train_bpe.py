from pathlib import Path

import pytest
from tokenizers import Tokenizer

from gristmill.tokenizer.train_bpe import BpeTrainingConfig, train_bpe

from tokenizer_testdata import SPECIAL_TOKENS


def test_trained_tokenizer_has_the_special_tokens_first_and_round_trips(tokenizer_file: Path,
                                                                         small_corpus: Path) -> None:
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    assert [tokenizer.token_to_id(t) for t in SPECIAL_TOKENS] == [0, 1, 2]
    assert tokenizer.get_vocab_size() == 1000
    text = "Zeichen wie ß, 磨坊 und 🎉 kommen im Training kaum vor.\n\ttabs"
    assert tokenizer.decode(tokenizer.encode(text).ids) == text


def test_sample_is_deterministic_and_changes_with_the_seed(tmp_path: Path, small_corpus: Path) -> None:
    files = [train_bpe([str(small_corpus)], tmp_path / f"{name}.json",
                       BpeTrainingConfig(vocab_size=300, sample_fraction=0.3, seed=seed))
             for name, seed in (("a", 1), ("b", 1), ("c", 2))]
    first, again, other = (f.read_bytes() for f in files)
    assert first == again and first != other


def test_optional_special_tokens_can_be_left_out(tmp_path: Path, small_corpus: Path) -> None:
    config = BpeTrainingConfig(vocab_size=300, eos_token="</s>", bos_token=None, pad_token=None)
    tokenizer = Tokenizer.from_file(str(train_bpe([str(small_corpus)], tmp_path / "t.json", config)))
    assert tokenizer.token_to_id("</s>") == 0 and tokenizer.token_to_id("<|pad|>") is None


@pytest.mark.parametrize("options, message", [
    ({"vocab_size": 200}, "vocab_size must be in 259"),
    ({"sample_fraction": 0.0}, "sample_fraction"),
    ({"bos_token": "<|endoftext|>"}, "special tokens must differ"),
])
def test_bad_config_is_named(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BpeTrainingConfig(**options)
