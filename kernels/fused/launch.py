"""Launch helpers for the fused kernels: where they may run (CUDA, or the CPU interpreter) and grid sizing."""

import torch

from gristmill.kernels.interpreter import interpreting


def check_triton_device(op: str, *tensors: torch.Tensor) -> None:
    """Raises ValueError before a launch Triton would reject, pointing CPU users at the reference."""
    if interpreting():
        return
    for tensor in tensors:
        if tensor.device.type != "cuda":
            raise ValueError(
                f"{op}: got a tensor on {tensor.device}; the Triton kernel needs CUDA "
                f"(or TRITON_INTERPRET=1). On CPU call {op}_reference instead."
            )


def num_warps_for_row(block: int) -> int:
    """Warps for a program that owns one row of `block` elements: about 512 elements per warp."""
    return max(1, min(16, block // 512))


def multiprocessor_count(device: torch.device) -> int:
    """Streaming multiprocessors of a CUDA device (sizes persistent grids); 1 elsewhere (the interpreter)."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 1
