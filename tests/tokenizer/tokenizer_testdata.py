"""Constants and helpers shared by the tokenizer tests (fixtures live in conftest.py)."""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SAMPLE_CORPUS = Path(__file__).parents[2] / "data" / "sample"
SPECIAL_TOKENS = ("<|endoftext|>", "<|bos|>", "<|pad|>")


def write_documents(path: Path, ids: list[str], texts: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"id": ids, "text": pa.array(texts, pa.large_string())}), path)
    return path


def random_texts(rng: np.random.Generator, count: int) -> list[str]:
    """Texts mixing ASCII, non-Latin words, whitespace runs and special-token text."""
    alphabet = list("abcdefgh ijk.,\n") + ["Müller", "磨坊", "<|endoftext|>", "  ", "\t", "1234", "'s", "🙂"]
    return ["".join(rng.choice(alphabet, size=rng.integers(1, 300))) for _ in range(count)]
