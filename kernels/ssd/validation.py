"""Argument checks shared by the SSD scan, its references and the conv1d: a user mistake raises ValueError
naming the argument, before any kernel runs."""

import torch


def check_cu_seqlens(cu_seqlens: torch.Tensor | None, total_tokens: int, device: torch.device) -> None:
    """Offsets must be int32 `[n_docs + 1]` on the inputs' device; their values are checked apart, since that
    costs a host sync."""
    if cu_seqlens is None:
        return
    if cu_seqlens.dtype != torch.int32 or cu_seqlens.dim() != 1 or cu_seqlens.shape[0] < 2:
        raise ValueError(
            f"cu_seqlens must be a 1-D int32 tensor with at least 2 entries, got {cu_seqlens.dtype} "
            f"of shape {tuple(cu_seqlens.shape)}"
        )
    if cu_seqlens.device != device:
        raise ValueError(f"cu_seqlens is on {cu_seqlens.device}, the inputs on {device}")


def check_cu_seqlens_values(cu_seqlens: torch.Tensor, total_tokens: int) -> None:
    """Offsets must start at 0, never decrease and end at T."""
    bad = (cu_seqlens[0] != 0) | (cu_seqlens[-1] != total_tokens) | (cu_seqlens.diff() < 0).any()
    if bad.item():
        raise ValueError(
            f"cu_seqlens must rise from 0 to T={total_tokens} without decreasing, got {cu_seqlens.tolist()}"
        )


def check_ssd_inputs(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    cu_seqlens: torch.Tensor | None,
    chunk_size: int,
    initial_state: torch.Tensor | None,
) -> None:
    if x.dim() != 3:
        raise ValueError(f"x must be [T, H, P], got shape {tuple(x.shape)}")
    T, H, P = x.shape
    if dt.shape != (T, H):
        raise ValueError(f"dt must be [T, H] = {(T, H)}, got {tuple(dt.shape)}")
    if A.shape != (H,):
        raise ValueError(f"A must be [H] = {(H,)}, got {tuple(A.shape)}")
    if B.dim() != 3 or B.shape[0] != T:
        raise ValueError(f"B must be [T, G, N] with T={T}, got {tuple(B.shape)}")
    if C.shape != B.shape:
        raise ValueError(f"C must have B's shape {tuple(B.shape)}, got {tuple(C.shape)}")
    G, N = B.shape[1], B.shape[2]
    if G == 0 or H % G != 0:
        raise ValueError(f"the number of heads H={H} must be divisible by the groups G={G} of B and C")
    if D is not None and D.shape != (H,):
        raise ValueError(f"D must be [H] = {(H,)}, got {tuple(D.shape)}")
    if chunk_size < 16 or chunk_size & (chunk_size - 1):
        raise ValueError(f"chunk_size must be a power of two >= 16, got {chunk_size}")
    for name, tensor in (("dt", dt), ("A", A), ("B", B), ("C", C), ("D", D), ("initial_state", initial_state)):
        if tensor is not None and tensor.device != x.device:
            raise ValueError(f"{name} is on {tensor.device}, x on {x.device}")
    check_cu_seqlens(cu_seqlens, T, x.device)
    n_docs = 1 if cu_seqlens is None else cu_seqlens.shape[0] - 1
    if initial_state is not None and initial_state.shape != (n_docs, H, P, N):
        raise ValueError(
            f"initial_state must be [n_docs, H, P, N] = {(n_docs, H, P, N)}, got {tuple(initial_state.shape)}"
        )
