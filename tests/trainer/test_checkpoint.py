"""Checkpoints: a crash in the middle of a save leaves the previous checkpoint whole and loadable."""

import json
from pathlib import Path

import pytest
import torch
from torch.distributed.checkpoint.api import CheckpointException

from gristmill.pipeline.errors import UserError
from gristmill.trainer import checkpoint
from gristmill.trainer.checkpoint import Checkpointer


def test_crash_mid_save_keeps_the_last_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    saver = Checkpointer(tmp_path, keep_last=2, rank=0, world_size=1)
    weights = torch.randn(5)
    saver.save(1, {"w": weights}, {"step": 1}, {"rng": 1})

    def crash(obj: object, f: object) -> None:
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.torch, "save", crash)  # hits the shard writes too
    with pytest.raises(CheckpointException, match="disk full"):
        saver.save(2, {"w": weights + 1}, {"step": 2}, {"rng": 2})
    monkeypatch.undo()

    loaded = {"w": torch.zeros(5)}
    restored = saver.load_latest(loaded)
    assert torch.equal(loaded["w"], weights)
    assert (restored.shared, restored.own, restored.world_size) == ({"step": 1}, {"rng": 1}, 1)
    for step in (3, 4, 5):
        saver.save(step, {"w": weights + step}, {"step": step}, {"rng": step})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-00000004", "step-00000005"]


def test_rank_state_is_left_out_under_another_world_size(tmp_path: Path) -> None:
    Checkpointer(tmp_path, keep_last=1, rank=0, world_size=1).save(1, {"w": torch.ones(2)}, {"step": 1}, {"rng": 1})
    restored = Checkpointer(tmp_path, keep_last=1, rank=0, world_size=2).load_latest({"w": torch.zeros(2)})
    assert (restored.shared, restored.own, restored.world_size) == ({"step": 1}, None, 1)


def test_a_checkpoint_of_the_older_rope_layout_is_refused(tmp_path: Path) -> None:
    """Its weights have the same names and shapes but pair RoPE's columns differently: loading would train on
    scrambled positions, so resuming names the layout instead."""
    saver = Checkpointer(tmp_path, keep_last=1, rank=0, world_size=1)
    saved = saver.save(1, {"w": torch.ones(2)}, {"step": 1}, {"rng": 1})
    meta = json.loads((saved / "meta.json").read_text())
    assert meta["layout"] == checkpoint.LAYOUT
    del meta["layout"]
    (saved / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="weight layout 1, this gristmill reads layout 2"):
        saver.load_latest({"w": torch.zeros(2)})
