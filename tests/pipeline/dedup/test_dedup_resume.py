"""A run killed in any phase of any dedup resumes, skips finished tasks, and ends as an uninterrupted run."""

import random
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from gristmill.pipeline.dedup import keyed, lines, removal
from gristmill.pipeline.dedup.exact import ExactDedup
from gristmill.pipeline.dedup.lines import LineDedup, LineDedupConfig
from gristmill.pipeline.dedup.minhash import stage as minhash_stage
from gristmill.pipeline.dedup.minhash.config import MinHashConfig
from gristmill.pipeline.dedup.minhash.stage import MinHashDedup
from gristmill.pipeline.stage import GlobalStage

from dedup_helpers import edit_words, random_text, run_stage, write_shards


class Killed(RuntimeError):
    pass


class FailOnce:
    """Calls the phase function, but raises on call number `fail_at` (counting from 0), as a crash would."""

    def __init__(self, fn: Callable, fail_at: int) -> None:
        self.fn, self.fail_at, self.calls = fn, fail_at, 0

    def __call__(self, task: object) -> dict:
        self.calls += 1
        if self.calls - 1 == self.fail_at:
            raise Killed(f"killed in task {self.fail_at}")
        return self.fn(task)


class Spy:
    def __init__(self, fn: Callable) -> None:
        self.fn, self.results = fn, []

    def __call__(self, task: object) -> dict:
        self.results.append(self.fn(task))
        return self.results[-1]


def corpus(root: Path) -> list[Path]:
    rng = random.Random()
    banner = "accept our cookies to read on"
    texts = [random_text(rng, 60) + "\n" + banner for _ in range(40)]
    texts += [edit_words(rng, t, 1) for t in texts[:12]] + texts[:6] + [banner] * 3
    docs = [{"id": f"d{i:03d}", "text": t} for i, t in enumerate(texts)]
    rng.shuffle(docs)
    return write_shards(root, [docs[0::3], docs[1::3], docs[2::3]])


def snapshot(stage_dir: Path) -> dict[str, list[dict]]:
    """Everything a user reads from a finished stage, timings left out."""
    result = {}
    for folder in ("", "removed", "clusters"):
        files = sorted((stage_dir / folder).glob("part-*.parquet"))
        result[folder or "kept"] = [row for path in files for row in pq.read_table(path).to_pylist()]
    return result


STAGES: dict[str, Callable[[], GlobalStage]] = {
    "minhash": lambda: MinHashDedup(MinHashConfig(partitions=3, verify=True)),
    "exact": lambda: ExactDedup(),
    "lines": lambda: LineDedup(LineDedupConfig(min_count=3, partitions=3)),
}
PHASES = [
    ("minhash", minhash_stage, "write_band_keys", 1),
    ("minhash", minhash_stage, "find_pairs", 1),
    ("minhash", minhash_stage, "cluster_pairs", 0),
    ("minhash", removal, "apply_removals", 1),
    ("exact", keyed, "write_keys", 2),
    ("exact", keyed, "pick_keepers", 1),
    ("exact", removal, "apply_removals", 1),
    ("lines", lines, "count_spans", 1),
    ("lines", lines, "select_frequent", 2),
    ("lines", lines, "drop_frequent_spans", 1),
]


@pytest.mark.parametrize("stage_name,module,phase,fail_at", PHASES, ids=[f"{p[0]}-{p[2]}" for p in PHASES])
def test_resume_after_a_kill(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stage_name: str, module: object, phase: str, fail_at: int
) -> None:
    inputs = corpus(tmp_path / "in")
    run_stage(STAGES[stage_name](), inputs, tmp_path / "clean")
    original = getattr(module, phase)
    monkeypatch.setattr(module, phase, FailOnce(original, fail_at))
    with pytest.raises(Killed):
        run_stage(STAGES[stage_name](), inputs, tmp_path / "resumed")
    spy = Spy(original)
    monkeypatch.setattr(module, phase, spy)
    run_stage(STAGES[stage_name](), inputs, tmp_path / "resumed")
    assert sum(bool(result.get("skipped")) for result in spy.results) == fail_at
    assert snapshot(tmp_path / "resumed") == snapshot(tmp_path / "clean")
    assert snapshot(tmp_path / "clean")["removed"], "the corpus has duplicates, so something must be removed"
