import os
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from gristmill.tokenizer import batch_encoder
from gristmill.tokenizer.batch_encoder import encode_with_eos, encoder_threads, set_encoder_threads, tokenizers_encoder

from tokenizer_testdata import random_texts


@pytest.mark.parametrize("jemalloc", [False, True], ids=["encode_batch", "encode_batch_fast"])
@pytest.mark.parametrize("dtype", ["uint16", "uint32"])
def test_tokens_are_the_encoders_ids_each_followed_by_eos(tokenizer_file: Path, dtype: str, jemalloc: bool,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    tokenizer.encode_special_tokens = True
    monkeypatch.setattr(batch_encoder, "jemalloc_loaded", lambda: jemalloc)
    assert batch_encoder.encoder_call(tokenizer).__name__ == ("encode_batch_fast" if jemalloc else "encode_batch")
    texts = random_texts(np.random.default_rng(), 50)
    tokens, lengths = encode_with_eos(tokenizers_encoder(tokenizer), texts, eos=7, dtype=dtype)
    expected = [e.ids + [7] for e in tokenizer.encode_batch(texts, add_special_tokens=False)]
    assert tokens.dtype == np.dtype(dtype)
    assert lengths.tolist() == [len(ids) - 1 for ids in expected]
    assert tokens.tolist() == [token for ids in expected for token in ids]


def test_no_documents_give_empty_arrays(tokenizer_file: Path) -> None:
    tokens, lengths = encode_with_eos(tokenizers_encoder(Tokenizer.from_file(str(tokenizer_file))), [], eos=0,
                                     dtype="uint16")
    assert tokens.shape == lengths.shape == (0,)


def test_encoder_threads_are_set_once_per_process(monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(batch_encoder, "_applied_threads", None)
    monkeypatch.delenv("RAYON_NUM_THREADS", raising=False)
    batch_encoder.log.addHandler(caplog.handler)
    try:
        set_encoder_threads(3)
        set_encoder_threads(3)
        assert not caplog.records
        set_encoder_threads(2)
    finally:
        batch_encoder.log.removeHandler(caplog.handler)
    assert os.environ["RAYON_NUM_THREADS"] == "3" and encoder_threads() == 3
    assert "encode_threads=2 ignored" in caplog.text
    with pytest.raises(ValueError, match="must be >= 1, got 0"):
        set_encoder_threads(0)
