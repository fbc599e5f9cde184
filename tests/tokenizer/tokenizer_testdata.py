"""Constants shared by the tokenizer tests (fixtures live in conftest.py)."""

from pathlib import Path

SAMPLE_CORPUS = Path(__file__).parents[2] / "data" / "sample"
SPECIAL_TOKENS = ("<|endoftext|>", "<|bos|>", "<|pad|>")
