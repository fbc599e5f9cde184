"""Where the run executes (ranks, device) and how the single-device model is spread over it.

Model code stays single-device; this module applies torch.compile, then FSDP2 (per block, then the root) or
DDP, as the last step of building the model, and says how accumulation steps skip the gradient sync.
"""

import contextlib
import os
from dataclasses import dataclass
from typing import Literal

import torch
import torch.distributed as dist
from torch import nn

from gristmill.trainer.config import TrainConfig

Parallelism = Literal["fsdp", "ddp", "none"]


@dataclass(frozen=True)
class Runtime:
    rank: int
    world_size: int
    device: torch.device
    owns_process_group: bool
    """True when init_runtime started the group (torchrun); Ray Train starts and ends its own."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_runtime() -> Runtime:
    """Joins the process group when started by torchrun (or Ray Train), which set RANK and WORLD_SIZE."""
    cuda = torch.cuda.is_available()
    owns_process_group = "RANK" in os.environ and not dist.is_initialized()
    if owns_process_group:
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    world_size = dist.get_world_size() if dist.is_initialized() else 1
    if cuda:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    return Runtime(rank=rank, world_size=world_size, device=device, owns_process_group=owns_process_group)


def resolve_parallelism(cfg: TrainConfig, runtime: Runtime) -> Parallelism:
    """The `parallelism` option with "auto" decided, checked against how the run was launched."""
    mode = cfg.parallelism
    if mode == "auto":
        mode = "fsdp" if runtime.world_size > 1 else "none"
    if mode == "none" and runtime.world_size > 1:
        raise ValueError(f"parallelism = 'none' with {runtime.world_size} ranks: choose 'fsdp' or 'ddp'")
    if mode != "none" and not dist.is_initialized():
        raise ValueError(
            f"parallelism = {mode!r} needs a process group: launch with torchrun (even --nproc_per_node 1)"
        )
    return mode


def compute_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype:
    """bf16 (autocast, FSDP2 parameters) only on GPU: CPU kernels and gloo collectives stay float32."""
    return torch.bfloat16 if device.type == "cuda" and cfg.dtype == "bfloat16" else torch.float32


def parallelize(model: nn.Module, cfg: TrainConfig, runtime: Runtime, mode: Parallelism) -> nn.Module:
    """Compiles each block (if asked), then shards each block and the root with FSDP2, or wraps in DDP."""
    if cfg.compile:
        for block in model.layers:
            block.compile()
    if mode == "fsdp":
        _shard(model, cfg, runtime)
    elif mode == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [runtime.device.index] if runtime.device.type == "cuda" else None
        model = DistributedDataParallel(model, device_ids=device_ids)
    return model


def _shard(model: nn.Module, cfg: TrainConfig, runtime: Runtime) -> None:
    try:
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
    except ImportError:  # torch 2.5 keeps FSDP2 under its composable namespace
        from torch.distributed._composable.fsdp import MixedPrecisionPolicy, fully_shard
    from torch.distributed.device_mesh import init_device_mesh

    param_dtype = compute_dtype(cfg, runtime.device)
    reduce_dtype = getattr(torch, cfg.reduce_dtype) if runtime.device.type == "cuda" else torch.float32
    policy = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=reduce_dtype)
    mesh = init_device_mesh(runtime.device.type, (runtime.world_size,))
    for block in model.layers:
        fully_shard(block, mesh=mesh, mp_policy=policy, reshard_after_forward=cfg.reshard_after_forward)
    fully_shard(model, mesh=mesh, mp_policy=policy, reshard_after_forward=cfg.reshard_after_forward)


def gradient_sync(model: nn.Module, mode: Parallelism, enabled: bool) -> contextlib.AbstractContextManager:
    """Enter around a micro-batch's backward: only the last micro-batch of a step reduces gradients."""
    if mode == "fsdp":
        model.set_requires_gradient_sync(enabled)
    elif mode == "ddp" and not enabled:
        return model.no_sync()
    return contextlib.nullcontext()
