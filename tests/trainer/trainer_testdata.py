"""Helpers shared by the trainer tests (a plain module: `conftest` names clash across folders)."""

import socket
from typing import Any

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


class ListSource:
    """A finite, resumable document source over an in-memory list."""

    def __init__(self, documents: list[np.ndarray]) -> None:
        self.documents, self.position = documents, 0

    def next_document(self) -> np.ndarray:
        if self.position == len(self.documents):
            raise StopIteration
        self.position += 1
        return self.documents[self.position - 1]

    def state_dict(self) -> dict[str, Any]:
        return {"position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.position = state["position"]


def free_port() -> int:
    """A TCP port nobody listens on, for a test's process group rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
