"""Document generators shared by the trainer tests (a plain module: `conftest` names clash across folders)."""

import numpy as np

EOS = 0
VOCAB = 256


def random_documents(rng: np.random.Generator, count: int, max_len: int) -> list[np.ndarray]:
    """Documents of 1..max_len random tokens, each ending in EOS."""
    return [np.append(rng.integers(1, VOCAB, rng.integers(0, max_len)), EOS) for _ in range(count)]


def learnable_documents(rng: np.random.Generator, count: int) -> list[np.ndarray]:
    """Arithmetic progressions mod 250: a tiny model can learn them, so a falling loss means learning."""
    documents = []
    for _ in range(count):
        start, stride, length = rng.integers(1, 100), rng.integers(1, 4), rng.integers(5, 120)
        documents.append(np.append((start + stride * np.arange(length)) % 250 + 1, EOS))
    return documents
