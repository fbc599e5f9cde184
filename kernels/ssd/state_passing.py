"""Carry states from chunk to chunk inside each document, in place, forward or backward.

Forward: the buffer holds each chunk's own state; it is overwritten with the state entering the chunk,
starting from the document's initial state (or zero), and the state leaving the last chunk is returned.
Backward (REVERSE): the buffer holds each chunk's gradient to its entering state; it is overwritten with the
gradient of the state leaving the chunk, starting from the final-state gradient, and the gradient of the
initial state is returned. The chunk's decay exp(a_last) also gets its gradient, <dS_out, S_in>.
"""

import torch
import triton
import triton.language as tl

from gristmill.kernels.ssd.documents import ChunkPlan


@triton.jit
def _clamp(k, num_chunks):
    return tl.minimum(tl.maximum(k, 0), num_chunks - 1)


@triton.jit
def _ssd_kernel_state_passing(
    states,
    entering,
    chunk_decay,
    dchunk_decay,
    first,
    last,
    doc_chunk_offsets,
    NUM_CHUNKS,
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
    n = tl.load(doc_chunk_offsets + d + 1) - k0
    if HAS_FIRST:
        carry = tl.load(first + (d * H + h).to(tl.int64) * PN + offs, mask=mask, other=0.0).to(tl.float32)
    else:
        carry = tl.zeros([BLOCK], dtype=tl.float32)
    if REVERSE:
        step = -1
        k = k0 + n - 1
    else:
        step = 1
        k = k0
    # each step's loads are issued one step ahead, so the chain through `carry` waits on no memory; a load
    # past the document's chunks reads a clamped, unused chunk
    own = tl.load(states + (_clamp(k, NUM_CHUNKS) * H + h).to(tl.int64) * PN + offs, mask=mask, other=0.0)
    decay = tl.load(chunk_decay + h * NUM_CHUNKS + _clamp(k, NUM_CHUNKS))
    if REVERSE:
        s_in = tl.load(entering + (_clamp(k, NUM_CHUNKS) * H + h).to(tl.int64) * PN + offs, mask=mask, other=0.0)
    for i in range(0, n):
        k_next = k + step
        k_load = _clamp(k_next, NUM_CHUNKS)
        own_next = tl.load(states + (k_load * H + h).to(tl.int64) * PN + offs, mask=mask, other=0.0)
        decay_next = tl.load(chunk_decay + h * NUM_CHUNKS + k_load)
        tl.store(states + (k * H + h).to(tl.int64) * PN + offs, carry, mask=mask)
        if REVERSE:
            s_in_next = tl.load(entering + (k_load * H + h).to(tl.int64) * PN + offs, mask=mask, other=0.0)
            tl.atomic_add(dchunk_decay + h * NUM_CHUNKS + k, tl.sum(carry * s_in, axis=0))
            s_in = s_in_next
        carry = decay * carry + own
        own = own_next
        decay = decay_next
        k = k_next
    tl.store(last + (d * H + h).to(tl.int64) * PN + offs, carry, mask=mask)


def _launch(
    states: torch.Tensor,
    entering: torch.Tensor | None,
    chunk_decay: torch.Tensor,
    dchunk_decay: torch.Tensor | None,
    first: torch.Tensor | None,
    plan: ChunkPlan,
    reverse: bool,
) -> torch.Tensor:
    _, H, P, N = states.shape
    last = torch.empty(plan.num_docs, H, P, N, device=states.device, dtype=torch.float32)
    block = min(512, triton.next_power_of_2(P * N))
    _ssd_kernel_state_passing[(plan.num_docs, H, triton.cdiv(P * N, block))](
        states, entering, chunk_decay, dchunk_decay, first, last, plan.doc_chunk_offsets, plan.num_chunks,
        H=H, PN=P * N, HAS_FIRST=first is not None, REVERSE=reverse, BLOCK=block, num_warps=4,
    )  # fmt: skip
    return last


def state_passing_fwd(
    states: torch.Tensor, chunk_decay: torch.Tensor, initial_state: torch.Tensor | None, plan: ChunkPlan
) -> torch.Tensor:
    """Turns own-states into entering states in place; returns the final state of each document."""
    return _launch(states, None, chunk_decay, None, initial_state, plan, reverse=False)


def state_passing_bwd(
    dstates: torch.Tensor,
    entering: torch.Tensor,
    chunk_decay: torch.Tensor,
    dfinal_state: torch.Tensor | None,
    plan: ChunkPlan,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Turns entering-state gradients into leaving-state gradients in place; returns the initial state's
    gradient and that of each chunk's total log-decay `[H, num_chunks]`."""
    dlog_decay = torch.zeros_like(chunk_decay)
    dfirst = _launch(dstates, entering, chunk_decay, dlog_decay, dfinal_state, plan, reverse=True)
    return dfirst, dlog_decay * chunk_decay
