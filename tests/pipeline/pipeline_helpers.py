"""Helpers shared by the pipeline tests (plain functions; fixtures live in conftest.py)."""

import json
from pathlib import Path

HERE = Path(__file__).parent

MIN_CHARS = {"type": "stages_for_tests:MinChars", "min_chars": 60}


def make_documents(count: int, prefix: str) -> list[dict]:
    words = "the quick brown fox jumps over a lazy dog while seven wizards box jolly quails".split()
    docs = []
    for i in range(count):
        length = 3 + (i * 7) % 40
        text = " ".join(words[(i + j) % len(words)] for j in range(length))
        docs.append({"id": f"{prefix}-{i}", "text": text, "url": f"https://example.org/{prefix}/{i}"})
    return docs



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


def part_bytes(out: Path) -> dict[str, bytes]:
    """Every data file of a run (documents and side outputs), by relative path; stats hold timings."""
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("part-*"))
        if p.suffix in (".parquet", ".jsonl", ".arrow") and "stats" not in p.parts
    }
