"""Autograd wrapper and public entry point of the Triton SSD scan over packed documents."""

import torch

from gristmill.kernels.ssd.chunk_cumsum import chunk_cumsum_bwd, chunk_cumsum_fwd
from gristmill.kernels.ssd.chunk_scan_bwd_dx import chunk_scan_bwd_dx
from gristmill.kernels.ssd.chunk_scan_fwd import chunk_scan_fwd
from gristmill.kernels.ssd.documents import ChunkPlan, cached_chunk_plan, plan_chunks, whole_stream
from gristmill.kernels.ssd.group_gradient import group_gradient
from gristmill.kernels.ssd.reference import ScanOutput
from gristmill.kernels.ssd.score_gradient import score_gradient
from gristmill.kernels.ssd.state_scan import state_scan_bwd, state_scan_fwd
from gristmill.kernels.ssd.validation import check_ssd_inputs


class SSDScanFunction(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        x: torch.Tensor,
        dt: torch.Tensor,
        A: torch.Tensor,
        B: torch.Tensor,
        C: torch.Tensor,
        D: torch.Tensor | None,
        initial_state: torch.Tensor | None,
        plan: ChunkPlan,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        a, dt_by_head, chunk_decay = chunk_cumsum_fwd(dt, A, plan)
        entering, final_state = state_scan_fwd(x, dt_by_head, a, B, chunk_decay, initial_state, plan)
        y = chunk_scan_fwd(x, dt_by_head, a, B, C, D, entering, plan)
        ctx.save_for_backward(x, dt, dt_by_head, A, B, C, D, a, chunk_decay, entering)
        ctx.plan = plan
        ctx.has_initial_state = initial_state is not None
        ctx.initial_state_dtype = None if initial_state is None else initial_state.dtype
        ctx.set_materialize_grads(False)  # an unused final state sends None, not a zero tensor
        return y, final_state

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, dy: torch.Tensor, dfinal_state: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, ...]:
        x, dt, dt_by_head, A, B, C, D, a, chunk_decay, entering = ctx.saved_tensors
        plan: ChunkPlan = ctx.plan
        dy = torch.zeros_like(x) if dy is None else dy.contiguous()
        dleaving, dfirst, dlog_decay = state_scan_bwd(
            dy, a, C, chunk_decay, entering, None if dfinal_state is None else dfinal_state.contiguous(), plan
        )
        dx, ddt_direct, dD = chunk_scan_bwd_dx(x, dt_by_head, a, B, C, D, dy, dleaving, plan)
        dscores, da = score_gradient(x, dt_by_head, a, B, C, dy, plan)
        dB = group_gradient(dscores, x, dleaving, C, B, dt_by_head, a, da, plan, source=True)
        dC = group_gradient(dscores, dy, entering, B, C, dt_by_head, a, da, plan, source=False)
        ddt, dA = chunk_cumsum_bwd(dt, dt_by_head, A, da, dlog_decay, ddt_direct, plan)
        dinitial = dfirst.to(ctx.initial_state_dtype) if ctx.has_initial_state else None
        return dx, ddt, dA, dB, dC, None if dD is None else dD.to(D.dtype), dinitial, None


def ssd_scan(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    *,
    D: torch.Tensor | None = None,
    cu_seqlens: torch.Tensor | None = None,
    chunk_size: int = 256,
    initial_state: torch.Tensor | None = None,
    return_final_state: bool = False,
) -> ScanOutput:
    """Mamba2 selective state-space scan (SSD, chunked) over packed documents, on CUDA or the interpreter.

    x `[T, H, P]`, dt `[T, H]` (positive: softplus and bias already applied), A `[H]` (negative),
    B and C `[T, G, N]` with G dividing H, D `[H]`; `cu_seqlens` int32 `[n_docs + 1]` from 0 to T, the
    state restarting at each boundary (None: one document). `initial_state` `[n_docs, H, P, N]`.
    Returns y `[T, H, P]` in x's dtype, and with `return_final_state` also each document's final state
    `[n_docs, H, P, N]` in fp32. The state is kept in fp32 throughout; matrix products take x's dtype.

    >>> y = ssd_scan(x, F.softplus(dt + dt_bias), -torch.exp(A_log), B, C, D=D, cu_seqlens=cu)
    """
    check_ssd_inputs(x, dt, A, B, C, D, cu_seqlens, chunk_size, initial_state)
    T = x.shape[0]
    if cu_seqlens is None:
        plan = plan_chunks(whole_stream(T, x.device), T, chunk_size)
    else:
        plan = cached_chunk_plan(cu_seqlens, T, chunk_size)
    y, final_state = SSDScanFunction.apply(
        x.contiguous(),
        dt.contiguous(),
        A.contiguous(),
        B.contiguous(),
        C.contiguous(),
        None if D is None else D.contiguous(),
        None if initial_state is None else initial_state.contiguous(),
        plan,
    )
    return (y, final_state) if return_final_state else y
