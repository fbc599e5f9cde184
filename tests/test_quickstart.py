"""The README quickstart, command by command, in a scratch folder: sample corpus → language ID → quality
filters → MinHash dedup → BPE tokenizer → token shards → a tiny hybrid trained 100 steps → the report."""

import json
import math
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def quickstart_commands() -> list[list[str]]:
    """The `gristmill ...` lines of the README's quickstart block, comments stripped."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quickstart", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    lines = [line.split("#", 1)[0].strip() for line in block.splitlines()]
    return [shlex.split(line) for line in lines if line.startswith("gristmill ")]


def test_readme_quickstart_runs_end_to_end_and_the_model_learns(tmp_path: Path) -> None:
    for folder in ("data", "recipes"):
        (tmp_path / folder).symlink_to(REPO / folder)
    commands = quickstart_commands()
    assert [c[1] for c in commands] == ["filter", "run", "stats", "tokenizer", "tokenize", "train", "report"]
    for command in commands:
        if command[1] == "train":
            command += ["--set", "metrics.log_every=1"]
        done = subprocess.run([sys.executable, "-m", "gristmill.pipeline", *command[1:]], cwd=tmp_path,
                              capture_output=True, text=True)
        assert done.returncode == 0, f"{' '.join(command)}\n{done.stderr[-3000:]}"

    stats = json.loads((tmp_path / "out/fineweb-like/minhash_dedup/stats.json").read_text())
    manifest = json.loads((tmp_path / "out/tokens/tokenize/dataset/manifest.json").read_text())
    assert 0 < manifest["num_documents"] == stats["docs_out"]
    assert manifest["vocab_size"] == 8192

    records = [json.loads(line) for line in (tmp_path / "out/train/metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    validation = [r["val_loss"] for r in records if "val_loss" in r]
    assert len(losses) == 100 and abs(losses[0] - math.log(8192)) < 1.0
    assert np.mean(losses[-10:]) < 0.8 * losses[0]
    assert validation[-1] < 0.8 * losses[0]
    assert "<html" in (tmp_path / "out/report.html").read_text(encoding="utf-8")[:2000].lower()
