"""Fixtures for pipeline tests: a small multi-format corpus; test stages importable everywhere."""

import gzip
import json
import os
from pathlib import Path

import pytest
import zstandard

from pipeline_helpers import HERE, make_documents


@pytest.fixture(autouse=True)
def _test_stages_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Makes `stages_for_tests` importable here, in spawned workers and in Ray workers (via PYTHONPATH)."""
    monkeypatch.syspath_prepend(str(HERE))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])))


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
