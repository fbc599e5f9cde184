"""Autograd wrapper and public entry point of the Triton SSD scan over packed documents.

`ssd_forward` and `ssd_backward` run the kernels on caller-given buffers, so a larger fused function (the Mamba2
mixer core) can feed the scan column slices of its conv output and take dx, dB and dC straight into slices of one
gradient tensor.
"""

from typing import NamedTuple

import torch

from gristmill.kernels.ssd.chunk_cumsum import chunk_cumsum_bwd, chunk_cumsum_fwd
from gristmill.kernels.ssd.chunk_scan_bwd_dx import chunk_scan_bwd_dx
from gristmill.kernels.ssd.chunk_scan_fwd import chunk_scan_fwd
from gristmill.kernels.ssd.documents import ChunkPlan, stream_chunk_plan
from gristmill.kernels.ssd.group_gradient import group_gradient
from gristmill.kernels.ssd.layout import empty_rows_like, rows_in_place
from gristmill.kernels.ssd.reference import ScanOutput
from gristmill.kernels.ssd.score_gradient import score_gradient
from gristmill.kernels.ssd.validation import check_ssd_inputs


class ScanInputs(NamedTuple):
    """The scan's tensor inputs: x, B, C and dt need contiguous rows only (any row stride). With `dt_bias` they are
    Mamba2's raw parameters: dt is the projection's output and A is A_log; the kernels form the step
    softplus(dt + dt_bias) and the rate -exp(A_log), and the gradients come back w.r.t. raw dt, dt_bias and A_log."""

    x: torch.Tensor
    dt: torch.Tensor
    A: torch.Tensor
    B: torch.Tensor
    C: torch.Tensor
    D: torch.Tensor | None
    dt_bias: torch.Tensor | None = None


class ScanIntermediates(NamedTuple):
    """What the forward leaves for the backward besides the inputs."""

    dt_by_head: torch.Tensor
    a: torch.Tensor
    chunk_decay: torch.Tensor
    entering: torch.Tensor


class ScanGradients(NamedTuple):
    """The gradients `ssd_backward` returns (dx, dB and dC go to caller-given buffers)."""

    ddt: torch.Tensor
    dA: torch.Tensor
    dD: torch.Tensor | None
    dinitial_state: torch.Tensor | None
    ddt_bias: torch.Tensor | None = None


class _ZeroedSums(NamedTuple):
    """The backward's atomically summed gradients, views of one zeroed fp32 buffer: one memset, not four."""

    da: torch.Tensor
    dchunk_decay: torch.Tensor
    dD: torch.Tensor
    cumsum: torch.Tensor
    """`[2, H]`: dA and the dt bias's gradient."""

    @classmethod
    def allocate(cls, heads: int, total: int, num_chunks: int, device: torch.device) -> "_ZeroedSums":
        sizes = (heads * total, heads * num_chunks, heads, 2 * heads)
        da, dchunk_decay, dD, cumsum = torch.zeros(sum(sizes), device=device, dtype=torch.float32).split(sizes)
        return cls(da.view(heads, total), dchunk_decay.view(heads, num_chunks), dD, cumsum.view(2, heads))


def ssd_forward(
    inputs: ScanInputs, initial_state: torch.Tensor | None, plan: ChunkPlan, *, keep_final_state: bool
) -> tuple[torch.Tensor, torch.Tensor | None, ScanIntermediates]:
    """y `[T, H, P]` (contiguous, x's dtype), each document's final state (None unless kept), and the backward's
    intermediates."""
    x, dt, A, B, C, D, dt_bias = inputs
    a, dt_by_head, chunk_decay = chunk_cumsum_fwd(dt, A, plan, dt_bias)
    y, entering, final_state = chunk_scan_fwd(x, dt_by_head, a, B, C, D, initial_state, plan, keep_final_state)
    return y, final_state, ScanIntermediates(dt_by_head, a, chunk_decay, entering)


def ssd_backward(
    inputs: ScanInputs,
    saved: ScanIntermediates,
    dy: torch.Tensor,
    dfinal_state: torch.Tensor | None,
    plan: ChunkPlan,
    grads: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    *,
    keep_initial_gradient: bool,
    ddt: torch.Tensor | None = None,
) -> ScanGradients:
    """Writes dx, dB and dC into `grads` (shaped like x, B and C, contiguous rows at any row stride) and ddt into
    `ddt` (likewise; None: a new tensor), and returns the other gradients (the initial state's None unless kept;
    dt_bias's fp32, None without one); dy needs contiguous rows, dfinal_state (None: unused) is contiguous."""
    x, dt, A, B, C, D, dt_bias = inputs
    dx, dB, dC = grads
    dt_by_head, a, chunk_decay, entering = saved
    sums = _ZeroedSums.allocate(x.shape[1], x.shape[0], plan.num_chunks, x.device)
    ddt_direct, dleaving, dfirst = chunk_scan_bwd_dx(
        x, dt_by_head, a, B, C, D, dy, entering, dfinal_state, plan, keep_initial_gradient, dx, sums.dD,
        sums.dchunk_decay,
    )  # fmt: skip
    dscores = score_gradient(x, dt_by_head, a, B, C, dy, plan, sums.da)
    group_gradient(dscores, x, dleaving, C, B, dt_by_head, a, sums.da, plan, dB, source=True)
    group_gradient(dscores, dy, entering, B, C, dt_by_head, a, sums.da, plan, dC, source=False)
    ddt, dA, ddt_bias = chunk_cumsum_bwd(
        dt, dt_by_head, A, sums.da, sums.dchunk_decay, chunk_decay, ddt_direct, plan, sums.cumsum, dt_bias, ddt
    )
    return ScanGradients(ddt, dA, None if D is None else sums.dD.to(D.dtype), dfirst, ddt_bias)


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
        return_final_state: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        inputs = ScanInputs(x, dt, A, B, C, D)
        y, final_state, saved = ssd_forward(inputs, initial_state, plan, keep_final_state=return_final_state)
        ctx.save_for_backward(*inputs, *saved)
        ctx.plan = plan
        ctx.has_initial_state = initial_state is not None
        ctx.initial_state_dtype = None if initial_state is None else initial_state.dtype
        ctx.set_materialize_grads(False)  # an unused final state sends None, not a zero tensor
        return y, final_state

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, dy: torch.Tensor | None, dfinal_state: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, ...]:
        inputs = ScanInputs(*ctx.saved_tensors[: len(ScanInputs._fields)])
        saved = ScanIntermediates(*ctx.saved_tensors[len(ScanInputs._fields) :])
        x, B, C = inputs.x, inputs.B, inputs.C
        dy = torch.zeros(x.shape, device=x.device, dtype=x.dtype) if dy is None else rows_in_place(dy)
        dx, dB, dC = empty_rows_like(x), empty_rows_like(B), empty_rows_like(C)
        dfinal_state = None if dfinal_state is None else dfinal_state.contiguous()
        ddt, dA, dD, dfirst, _ = ssd_backward(
            inputs, saved, dy, dfinal_state, ctx.plan, (dx, dB, dC), keep_initial_gradient=ctx.has_initial_state
        )
        dinitial = dfirst.to(ctx.initial_state_dtype) if ctx.has_initial_state else None
        return dx, ddt, dA, dB, dC, dD, dinitial, None, None


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
    x, B and C are read in place when their token rows are contiguous (column slices of one tensor).

    >>> y = ssd_scan(x, F.softplus(dt + dt_bias), -torch.exp(A_log), B, C, D=D, cu_seqlens=cu)
    """
    check_ssd_inputs(x, dt, A, B, C, D, cu_seqlens, chunk_size, initial_state)
    y, final_state = SSDScanFunction.apply(
        rows_in_place(x),
        dt.contiguous(),
        A.contiguous(),
        rows_in_place(B),
        rows_in_place(C),
        None if D is None else D.contiguous(),
        None if initial_state is None else initial_state.contiguous(),
        stream_chunk_plan(cu_seqlens, x.shape[0], chunk_size, x.device),
        return_final_state,
    )
    return (y, final_state) if return_final_state else y
