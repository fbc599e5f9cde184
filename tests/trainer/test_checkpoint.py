"""Checkpoints: a crash in the middle of a save leaves the previous checkpoint whole and loadable."""

from pathlib import Path

import pytest
import torch

from gristmill.trainer import checkpoint
from gristmill.trainer.checkpoint import Checkpointer


def test_crash_mid_save_keeps_the_last_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    saver = Checkpointer(tmp_path, keep_last=2, rank=0, world_size=1)
    weights = torch.randn(5)
    saver.save(1, {"w": weights}, {"loader": {"batches": 1}})

    def crash(obj: object, f: object) -> None:
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        saver.save(2, {"w": weights + 1}, {"loader": {"batches": 2}})
    monkeypatch.undo()

    shared, own = saver.load_latest()
    assert torch.equal(shared["w"], weights) and own == {"loader": {"batches": 1}}
    for step in (3, 4, 5):
        saver.save(step, {"w": weights + step}, {"loader": {"batches": step}})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-00000004", "step-00000005"]


def test_resume_under_another_world_size_is_refused(tmp_path: Path) -> None:
    Checkpointer(tmp_path, keep_last=1, rank=0, world_size=1).save(1, {}, {})
    with pytest.raises(ValueError, match="same number of ranks"):
        Checkpointer(tmp_path, keep_last=1, rank=0, world_size=2).load_latest()
