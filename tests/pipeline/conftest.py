"""Fixtures for pipeline tests: a small multi-format corpus and a recipe writer."""

import gzip
import json
import os
from pathlib import Path

import pytest
import zstandard

HERE = Path(__file__).parent


@pytest.fixture(autouse=True)
def _test_stages_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Makes `stages_for_tests` importable here, in spawned workers and in Ray workers (via PYTHONPATH)."""
    monkeypatch.syspath_prepend(str(HERE))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])))


def make_documents(count: int, prefix: str) -> list[dict]:
    words = "the quick brown fox jumps over a lazy dog while seven wizards box jolly quails".split()
    docs = []
    for i in range(count):
        length = 3 + (i * 7) % 40
        text = " ".join(words[(i + j) % len(words)] for j in range(length))
        docs.append({"id": f"{prefix}-{i}", "text": text, "url": f"https://example.org/{prefix}/{i}"})
    return docs


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """Four input files (plain, gzip, zstd JSONL) of 60 documents each, some too short for MinChars."""
    root = tmp_path / "corpus"
    root.mkdir()
    for index, suffix in enumerate([".jsonl", ".jsonl.gz", ".jsonl.zst", ".jsonl"]):
        lines = "".join(json.dumps(d) + "\n" for d in make_documents(60, f"f{index}")).encode()
        if suffix == ".jsonl.gz":
            lines = gzip.compress(lines)
        elif suffix == ".jsonl.zst":
            lines = zstandard.ZstdCompressor().compress(lines)
        (root / f"part{index}{suffix}").write_bytes(lines)
    return root


def write_recipe(path: Path, inputs: str, out: Path, stages: list[dict], workers: int = 1, kind: str = "local") -> Path:
    lines = [
        "[input]",
        f"paths = [{json.dumps(inputs)}]",
        "batch_size = 16",
        "[output]",
        f"path = {json.dumps(str(out))}",
        "[executor]",
        f'kind = "{kind}"',
        f"workers = {workers}",
    ]
    for stage in stages:
        lines.append("[[stages]]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in stage.items()]
    path.write_text("\n".join(lines) + "\n")
    return path
