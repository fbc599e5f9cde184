"""Constants and helpers shared by the tokenizer tests (fixtures live in conftest.py)."""

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

SAMPLE_CORPUS = Path(__file__).parents[2] / "data" / "sample"
SPECIAL_TOKENS = ("<|endoftext|>", "<|bos|>", "<|pad|>")


def write_documents(path: Path, ids: list[str], texts: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"id": ids, "text": pa.array(texts, pa.large_string())}), path)
    return path
