"""A training run's metrics JSONL (one object per logged step), read leniently: keys may be missing,
a line may be cut short by a killed run, and a resumed run logs some steps again (the last one wins)."""

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

PLOTTED = ("loss", "val_loss", "lr", "tokens_per_s", "mfu")
"""The metrics the report draws, in the order it draws them."""


@dataclass
class TrainingMetrics:
    path: Path
    series: dict[str, dict[int, float]] = field(default_factory=dict)
    """Metric name -> step -> value, for every numeric key of the file."""
    bad_lines: int = 0

    def steps_and_values(self, name: str) -> tuple[list[int], list[float]]:
        points = sorted(self.series.get(name, {}).items())
        return [step for step, _ in points], [value for _, value in points]

    @property
    def notes(self) -> list[str]:
        notes = [f"{self.path.name}: no {name} logged" for name in PLOTTED if name not in self.series]
        if self.bad_lines:
            notes.append(f"{self.path.name}: {self.bad_lines} line(s) were not JSON objects with a step and were skipped")
        return notes


def load_metrics(path: Path) -> TrainingMetrics:
    """Reads every line of `path`; numbers (not bools, not NaN) become points of their metric at `step`."""
    if not path.is_file():
        raise FileNotFoundError(path)
    metrics = TrainingMetrics(path=path)
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = None
            if not isinstance(record, dict) or not isinstance(record.get("step"), int):
                metrics.bad_lines += 1
                continue
            for key, value in record.items():
                if key != "step" and _is_number(value):
                    metrics.series.setdefault(key, {})[record["step"]] = float(value)
    return metrics


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
