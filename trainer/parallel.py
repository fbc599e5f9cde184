"""Where the run executes (ranks, device) and how the single-device model is spread over it.

Model code stays single-device; this module applies torch.compile and FSDP2 in that order, per block and
then the root, as the last step of building the model.
"""

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from gristmill.trainer.config import TrainConfig


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


def uses_fsdp(cfg: TrainConfig, runtime: Runtime) -> bool:
    sharded = cfg.fsdp if cfg.fsdp is not None else runtime.world_size > 1
    if runtime.world_size > 1 and not sharded:
        raise ValueError(f"fsdp = false with {runtime.world_size} ranks: multi-rank training needs FSDP2")
    if sharded and not dist.is_initialized():
        raise ValueError("fsdp = true needs a process group: launch with torchrun (even --nproc_per_node 1)")
    return sharded


def parallelize(model: nn.Module, cfg: TrainConfig, runtime: Runtime, sharded: bool) -> nn.Module:
    """Compiles each block (if asked), then shards each block and the root with FSDP2."""
    if cfg.compile:
        for block in model.layers:
            block.compile()
    if sharded:
        try:
            from torch.distributed.fsdp import fully_shard
        except ImportError:  # torch 2.5 keeps FSDP2 under its composable namespace
            from torch.distributed._composable.fsdp import fully_shard
        from torch.distributed.device_mesh import init_device_mesh

        mesh = init_device_mesh(runtime.device.type, (runtime.world_size,))
        for block in model.layers:
            fully_shard(block, mesh=mesh)
        fully_shard(model, mesh=mesh)
    return model
