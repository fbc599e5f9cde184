"""Carry states from chunk to chunk inside each document, in place, forward or backward.

Forward: the buffer holds each chunk's own state; it is overwritten with the state entering the chunk,
starting from the document's initial state (or zero), and the state leaving the last chunk is returned.
Backward (REVERSE): the buffer holds each chunk's gradient to its entering state; it is overwritten with the
gradient of the state leaving the chunk, starting from the final-state gradient, and the gradient of the
initial state is returned. The decay exp(a_last) also gets its gradient, <dS_out, exp(a_last) S_in>.
"""

import torch
import triton
import triton.language as tl

from gristmill.kernels.ssd.documents import ChunkPlan


@triton.jit(do_not_specialize=["T"])
def _ssd_kernel_state_passing(
    states,
    entering,
    a,
    da,
    first,
    last,
    chunk_start,
    chunk_len,
    doc_chunk_offsets,
    T,
    H: tl.constexpr,
    PN: tl.constexpr,
    HAS_FIRST: tl.constexpr,
    REVERSE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    d = tl.program_id(0)
    h = tl.program_id(1)
    offs = tl.program_id(2) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < PN
    k0 = tl.load(doc_chunk_offsets + d)
    k1 = tl.load(doc_chunk_offsets + d + 1)
    if HAS_FIRST:
        carry = tl.load(first + (d * H + h).to(tl.int64) * PN + offs, mask=mask, other=0.0).to(tl.float32)
    else:
        carry = tl.zeros([BLOCK], dtype=tl.float32)
    for i in range(0, k1 - k0):
        if REVERSE:
            k = k1 - 1 - i
        else:
            k = k0 + i
        ptr = states + (k * H + h).to(tl.int64) * PN + offs
        own = tl.load(ptr, mask=mask, other=0.0)
        tl.store(ptr, carry, mask=mask)
        end = tl.load(chunk_start + k) + tl.load(chunk_len + k) - 1
        decay = tl.exp(tl.load(a + h * T + end))
        if REVERSE:
            s_in = tl.load(entering + (k * H + h).to(tl.int64) * PN + offs, mask=mask, other=0.0)
            tl.atomic_add(da + h * T + end, decay * tl.sum(carry * s_in, axis=0))
        carry = decay * carry + own
    tl.store(last + (d * H + h).to(tl.int64) * PN + offs, carry, mask=mask)


def _launch(
    states: torch.Tensor,
    entering: torch.Tensor | None,
    a: torch.Tensor,
    da: torch.Tensor | None,
    first: torch.Tensor | None,
    plan: ChunkPlan,
    reverse: bool,
) -> torch.Tensor:
    _, H, P, N = states.shape
    last = torch.empty(plan.num_docs, H, P, N, device=states.device, dtype=torch.float32)
    block = min(1024, triton.next_power_of_2(P * N))
    _ssd_kernel_state_passing[(plan.num_docs, H, triton.cdiv(P * N, block))](
        states, entering, a, da, first, last, plan.chunk_start, plan.chunk_len, plan.doc_chunk_offsets,
        a.shape[1], H=H, PN=P * N, HAS_FIRST=first is not None, REVERSE=reverse, BLOCK=block, num_warps=4,
    )  # fmt: skip
    return last


def state_passing_fwd(
    states: torch.Tensor, a: torch.Tensor, initial_state: torch.Tensor | None, plan: ChunkPlan
) -> torch.Tensor:
    """Turns own-states into entering states in place; returns the final state of each document."""
    return _launch(states, None, a, None, initial_state, plan, reverse=False)


def state_passing_bwd(
    dstates: torch.Tensor,
    entering: torch.Tensor,
    a: torch.Tensor,
    da: torch.Tensor,
    dfinal_state: torch.Tensor | None,
    plan: ChunkPlan,
) -> torch.Tensor:
    """Turns entering-state gradients into leaving-state gradients in place, adds into `da`; returns d initial."""
    return _launch(dstates, entering, a, da, dfinal_state, plan, reverse=True)
