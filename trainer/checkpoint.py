"""Checkpoints: everything that decides the next step, readable under another number of ranks, written so
that a crash never breaks the last good one.

A checkpoint is a folder `step-00000100/` holding the model and optimizer as a torch distributed checkpoint
(each rank writes its own shards; any number of ranks, sharded or not, reads them back), `trainer.pt` (the
state that is the same on every rank: step, scheduler, the loader's global position, tokens seen; plus each
rank's RNG state) and `meta.json`. It is written under a hidden temporary name, flushed, then renamed by
the main rank once every rank has written: the rename is atomic, so a folder named `step-*` is always
complete, and a crash mid-save leaves only a temporary folder that the next save removes. Older folders
beyond `keep_last` are deleted after a new one is in place. out_dir must be on storage every rank sees.
"""

import contextlib
import json
import os
import shutil
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from gristmill.pipeline.errors import UserError

_PREFIX = "step-"
_TEMPORARY = ".partial-"
LAYOUT = 2
"""What the saved weights mean beyond their names and shapes, written to meta.json and checked on resume. 2: RoPE
turns adjacent columns (2i, 2i + 1) of each q and k head; checkpoints without the field (layout 1) paired i with
i + D/2, so their attention weights would load with the same shapes and train on scrambled positions."""


def capture_rng() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def model_and_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """State dicts keyed by parameter name, FSDP2 shards left sharded and DDP's wrapper name dropped, so
    every parallelism writes and reads the same checkpoint; collective (every rank must call it)."""
    return {"model": get_model_state_dict(model), "optimizer": get_optimizer_state_dict(model, optimizer)}


def load_model_and_optimizer(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    set_model_state_dict(model, state["model"])
    set_optimizer_state_dict(model, optimizer, state["optimizer"])


@dataclass(frozen=True)
class Restored:
    shared: dict[str, Any]
    """The state every rank agrees on."""
    own: dict[str, Any] | None
    """This rank's own state; None when the checkpoint was written by another number of ranks."""
    world_size: int
    """How many ranks wrote the checkpoint."""


class Checkpointer:
    def __init__(self, directory: Path, *, keep_last: int, rank: int, world_size: int) -> None:
        self.directory = directory
        self.keep_last = keep_last
        self.rank, self.world_size = rank, world_size

    def save(self, step: int, tensors: dict[str, Any], shared: dict[str, Any], own: dict[str, Any]) -> Path:
        """Collective. `tensors` (possibly sharded) go to the distributed checkpoint; `shared` is the same on
        every rank and written once; `own` differs per rank."""
        temporary = self.directory / f"{_TEMPORARY}{step:08d}"
        if self.rank == 0:
            self.directory.mkdir(parents=True, exist_ok=True)
            for stale in self.directory.glob(f"{_TEMPORARY}*"):
                shutil.rmtree(stale, ignore_errors=True)
        self._barrier()
        with _one_process_is_intended():
            dcp.save(tensors, checkpoint_id=temporary, no_dist=not dist.is_initialized())
        gathered = [own]
        if self.world_size > 1:
            gathered = [None] * self.world_size
            dist.all_gather_object(gathered, own)
        final = self.directory / f"{_PREFIX}{step:08d}"
        if self.rank == 0:
            _write_synced(temporary / "trainer.pt", lambda f: torch.save({**shared, "ranks": gathered}, f))
            meta = {"step": step, "world_size": self.world_size, "layout": LAYOUT}
            _write_synced(temporary / "meta.json", lambda f: f.write(json.dumps(meta).encode()))
            if final.exists():
                shutil.rmtree(final)
            os.replace(temporary, final)
            _sync_directory(self.directory)
            for old in self.completed()[: -self.keep_last]:
                shutil.rmtree(old, ignore_errors=True)
        self._barrier()
        return final

    def completed(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.iterdir() if p.name.startswith(_PREFIX) and p.is_dir())

    def load_latest(self, tensors: dict[str, Any]) -> Restored | None:
        """Collective. Loads the newest checkpoint's tensors into `tensors` in place (resharded to this run's
        layout) and returns the rest; None if there is no checkpoint."""
        completed = self.completed()
        if not completed:
            return None
        newest = completed[-1]
        _check_layout(newest)
        if "model" in tensors:
            _check_model_fits(newest, tensors["model"])
        with _one_process_is_intended():
            dcp.load(tensors, checkpoint_id=newest, no_dist=not dist.is_initialized())
        shared = torch.load(newest / "trainer.pt", map_location="cpu", weights_only=True)
        ranks = shared.pop("ranks")
        own = ranks[self.rank] if len(ranks) == self.world_size else None
        return Restored(shared=shared, own=own, world_size=len(ranks))

    def _barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


def _check_layout(checkpoint: Path) -> None:
    layout = json.loads((checkpoint / "meta.json").read_text()).get("layout", 1)
    if layout != LAYOUT:
        raise UserError(
            f"checkpoint {checkpoint} was written with weight layout {layout}, this gristmill reads layout {LAYOUT} "
            f"(layout 2: RoPE turns adjacent column pairs; before it, pairs i and i + D/2): resume with the version "
            f"that wrote it, or start a new out_dir"
        )


def _check_model_fits(checkpoint: Path, model_state: dict[str, Any]) -> None:
    """Compares parameter names and shapes with the checkpoint's metadata before loading, so resuming with
    another model config (or a checkpoint from an older layout) names what differs instead of failing deep
    inside torch.distributed.checkpoint."""
    metadata = dcp.FileSystemReader(checkpoint).read_metadata().state_dict_metadata
    saved = {
        key.removeprefix("model."): tuple(entry.size)
        for key, entry in metadata.items()
        if key.startswith("model.") and hasattr(entry, "size")
    }
    current = {key: tuple(value.shape) for key, value in model_state.items()}
    problems = [f"{key} missing" for key in sorted(current.keys() - saved.keys())]
    problems += [f"{key} not in this model" for key in sorted(saved.keys() - current.keys())]
    problems += [
        f"{key} {saved[key]} saved, {current[key]} now"
        for key in sorted(current.keys() & saved.keys())
        if saved[key] != current[key]
    ]
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise UserError(
            f"checkpoint {checkpoint} was written by another model ({shown}): resume with the model config it "
            f"was trained with, or start a new out_dir"
        )


@contextlib.contextmanager
def _one_process_is_intended() -> Iterator[None]:
    """Without a process group DCP warns on every save and load that it assumes one process: that is the plan."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable or uninitialized")
        yield


def _write_synced(path: Path, write: Any) -> None:
    with path.open("wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


def _sync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
