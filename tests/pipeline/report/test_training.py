import json
from pathlib import Path

import numpy as np
import pytest

from gristmill.pipeline.report.training import load_metrics


def test_metrics_with_missing_keys_bad_lines_and_a_resume(tmp_path: Path) -> None:
    rng = np.random.default_rng()
    loss = {step: float(v) for step, v in zip(range(10, 210, 10), rng.uniform(2, 8, size=20))}
    lines = [json.dumps({"step": step, "loss": value, "lr": 1e-3, "tokens_per_s": 5e4}) for step, value in loss.items()]
    lines.insert(5, json.dumps({"step": 50, "val_loss": 4.5}))
    resumed = {step: float(rng.uniform(2, 8)) for step in (190, 200)}
    lines += [json.dumps({"step": step, "loss": value, "flag": True}) for step, value in resumed.items()]
    lines += ['{"step": 210, "loss": 1.', "[1, 2]", json.dumps({"loss": 3.0}), ""]
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(lines) + "\n")

    metrics = load_metrics(path)

    steps, values = metrics.steps_and_values("loss")
    assert steps == sorted(loss)
    assert values == [resumed.get(step, loss[step]) for step in steps]
    assert metrics.steps_and_values("val_loss") == ([50], [4.5])
    assert "flag" not in metrics.series
    assert metrics.bad_lines == 3
    assert metrics.notes == ["metrics.jsonl: no mfu logged",
                             "metrics.jsonl: 3 line(s) were not JSON objects with a step and were skipped"]


def test_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_metrics(tmp_path / "nope.jsonl")
