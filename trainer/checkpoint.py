"""Checkpoints: everything that decides the next step, written so that a crash never breaks the last good one.

A checkpoint is a folder `step-00000100/` holding `state.pt` (model, optimizer, scheduler, step counters, and
per rank the loader state and RNG) and `meta.json`. It is written under a hidden temporary name, flushed
to disk, then renamed: the rename is atomic, so a folder named `step-*` is always complete, and a crash
mid-save leaves only a temporary folder that the next save removes. Older folders beyond `keep_last` are
deleted after a new one is in place. Under FSDP2 the main rank gathers full (unsharded) state dicts and
writes; every rank reads the file on resume, so out_dir must be on storage all ranks see.
"""

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

_PREFIX = "step-"
_TEMPORARY = ".partial-"


def capture_rng() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def model_and_optimizer_state(
    model: nn.Module, optimizer: torch.optim.Optimizer, sharded: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Full state dicts, on CPU; collective under FSDP (every rank must call it)."""
    if not sharded:
        return model.state_dict(), optimizer.state_dict()
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=options), get_optimizer_state_dict(model, optimizer, options=options)


def load_model_and_optimizer(
    model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any], sharded: bool
) -> None:
    if not sharded:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        return
    options = StateDictOptions(full_state_dict=True)
    set_model_state_dict(model, state["model"], options=options)
    set_optimizer_state_dict(model, optimizer, state["optimizer"], options=options)


class Checkpointer:
    def __init__(self, directory: Path, *, keep_last: int, rank: int, world_size: int) -> None:
        self.directory = directory
        self.keep_last = keep_last
        self.rank, self.world_size = rank, world_size

    def save(self, step: int, shared: dict[str, Any], per_rank: dict[str, Any]) -> Path:
        """`shared` is the same on every rank (written by the main rank), `per_rank` differs per rank."""
        gathered = [per_rank]
        if self.world_size > 1:
            gathered = [None] * self.world_size
            dist.all_gather_object(gathered, per_rank)
        final = self.directory / f"{_PREFIX}{step:08d}"
        if self.rank == 0:
            self.directory.mkdir(parents=True, exist_ok=True)
            for stale in self.directory.glob(f"{_TEMPORARY}*"):
                shutil.rmtree(stale, ignore_errors=True)
            temporary = self.directory / f"{_TEMPORARY}{step:08d}"
            temporary.mkdir()
            _write_synced(temporary / "state.pt", lambda f: torch.save({**shared, "ranks": gathered}, f))
            meta = {"step": step, "world_size": self.world_size}
            _write_synced(temporary / "meta.json", lambda f: f.write(json.dumps(meta).encode()))
            if final.exists():
                shutil.rmtree(final)
            os.replace(temporary, final)
            _sync_directory(self.directory)
            for old in self.completed()[: -self.keep_last]:
                shutil.rmtree(old, ignore_errors=True)
        if self.world_size > 1:
            dist.barrier()
        return final

    def completed(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.iterdir() if p.name.startswith(_PREFIX) and p.is_dir())

    def load_latest(self) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """(shared state, this rank's state) of the newest checkpoint, or None if there is none."""
        completed = self.completed()
        if not completed:
            return None
        meta = json.loads((completed[-1] / "meta.json").read_text())
        if meta["world_size"] != self.world_size:
            raise ValueError(
                f"{completed[-1]} was written by {meta['world_size']} ranks, this run has {self.world_size}: "
                "resume with the same number of ranks so every rank continues its own token stream"
            )
        state = torch.load(completed[-1] / "state.pt", map_location="cpu", weights_only=True)
        return state, state.pop("ranks")[self.rank]


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
