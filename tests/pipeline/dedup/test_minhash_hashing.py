"""The vectorized hashing against plain-Python references: string hashes, n-gram shingles, signatures."""

import random

import numpy as np
import pyarrow as pa
import pytest

from gristmill.pipeline.dedup import string_hash
from gristmill.pipeline.dedup.minhash.config import MinHashConfig
from gristmill.pipeline.dedup.minhash.signatures import permutations, signatures
from gristmill.pipeline.dedup.segments import combine_ngrams
from gristmill.pipeline.dedup.string_hash import hash_strings, mix64

MASK = (1 << 64) - 1


def mix64_reference(x: int) -> int:
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & MASK
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def polynomial_reference(text: str) -> int:
    data = text.encode()
    value = 0
    for byte in data:
        value = (value * 0x100000001B3 + byte + 1) & MASK
    return mix64_reference(value ^ mix64_reference(len(data)))


def random_strings(rng: random.Random, count: int) -> list[str]:
    alphabet = "abcxyz é日本🙂\n"
    return [
        "".join(rng.choice(alphabet) for _ in range(rng.choice([0, 1, 3, 17, 200]))) for _ in range(count)
    ]


def test_mix64_matches_reference() -> None:
    values = [0, 1, 2**63, MASK, 123456789]
    assert mix64(np.array(values, dtype=np.uint64)).tolist() == [mix64_reference(v) for v in values]


def test_hash_strings_matches_reference_across_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(string_hash, "_CHUNK_BYTES", 64)
    strings = random_strings(random.Random(), 300)
    array = pa.array(["pad"] + strings, pa.large_string()).slice(1)
    assert hash_strings(array).tolist() == [polynomial_reference(s) for s in strings]


def test_combine_ngrams_matches_reference() -> None:
    rng = np.random.default_rng()
    lengths = rng.integers(0, 12, size=40)
    tokens = rng.integers(0, 2**64, size=int(lengths.sum()), dtype=np.uint64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    hashes, window_offsets = combine_ngrams(tokens, offsets, 5)
    weights = [int(w) for w in mix64(np.arange(1, 6, dtype=np.uint64)) | np.uint64(1)]
    for doc in range(len(lengths)):
        doc_tokens = [int(t) for t in tokens[offsets[doc] : offsets[doc + 1]]]
        windows = [doc_tokens[i : i + 5] for i in range(max(len(doc_tokens) - 4, min(len(doc_tokens), 1)))]
        expected = [mix64_reference(sum(t * w for t, w in zip(window, weights)) & MASK) for window in windows]
        assert hashes[window_offsets[doc] : window_offsets[doc + 1]].tolist() == expected


def test_signatures_match_reference() -> None:
    config = MinHashConfig(bands=3, rows=4)
    rng = np.random.default_rng()
    lengths = np.array([5, 0, 1, 30])
    hashes = rng.integers(0, 2**64, size=int(lengths.sum()), dtype=np.uint64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    found = signatures(hashes, offsets, config)
    multipliers, additions = permutations(config)
    for doc in range(len(lengths)):
        shingles = [int(h) for h in hashes[offsets[doc] : offsets[doc + 1]]]
        expected = [
            min(((int(a) * h + int(b)) & MASK) >> 32 for h in shingles) if shingles else 2**32 - 1
            for a, b in zip(multipliers, additions)
        ]
        assert found[doc].tolist() == expected


def test_signature_agreement_estimates_jaccard() -> None:
    """The permutations behave like min-wise hashes: agreement ~ Jaccard, within 4 standard errors."""
    config = MinHashConfig(bands=50, rows=20)
    rng = np.random.default_rng()
    universe = rng.integers(0, 2**64, size=3000, dtype=np.uint64)
    for shared in (100, 500, 900):
        first = universe[:1000]
        second = np.concatenate([universe[:shared], universe[1000 : 2000 - shared]])
        jaccard = shared / (2000 - shared)
        pair = signatures(np.concatenate([first, second]), np.array([0, 1000, 2000]), config)
        agreement = float((pair[0] == pair[1]).mean())
        assert abs(agreement - jaccard) < 4 * np.sqrt(jaccard * (1 - jaccard) / config.permutations) + 0.01
