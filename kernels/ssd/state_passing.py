"""Carry states from chunk to chunk inside each document, forward or backward, in fp32.

Forward: from each chunk's own state, the state entering every chunk, starting from the document's initial
state (or zero); the state leaving the last chunk is returned. Backward (REVERSE): from each chunk's gradient
to its entering state, the gradient of the state leaving every chunk, starting from the final-state gradient;
the gradient of the initial state is returned, and each chunk's decay exp(a_last) gets its gradient
<dS_out, S_in>. The carried states are written in the matrix-product dtype (the readers round them to it
anyway), which halves what they move; the carry itself never leaves fp32.
"""

import torch
import triton
import triton.language as tl

from gristmill.kernels.ssd.documents import ChunkPlan
from gristmill.kernels.ssd.tuning import candidates


@triton.jit
def _clamp(k, num_chunks):
    return tl.minimum(tl.maximum(k, 0), num_chunks - 1)


@triton.jit(do_not_specialize=["NUM_CHUNKS"])
def _ssd_kernel_state_passing(
    own_states,
    carried,
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
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    h = tl.program_id(1)
    d = tl.program_id(2)
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
    k_load = _clamp(k, NUM_CHUNKS)
    own = tl.load(own_states + (k_load * H + h).to(tl.int64) * PN + offs, mask=mask, other=0.0)
    decay = tl.load(chunk_decay + h * NUM_CHUNKS + k_load)
    if REVERSE:
        s_in = tl.load(entering + (k_load * H + h).to(tl.int64) * PN + offs, mask=mask, other=0.0).to(tl.float32)
    for _ in range(n):
        k_next = k + step
        k_load = _clamp(k_next, NUM_CHUNKS)
        own_next = tl.load(own_states + (k_load * H + h).to(tl.int64) * PN + offs, mask=mask, other=0.0)
        decay_next = tl.load(chunk_decay + h * NUM_CHUNKS + k_load)
        tl.store(carried + (k * H + h).to(tl.int64) * PN + offs, carry.to(carried.dtype.element_ty), mask=mask)
        if REVERSE:
            s_in_next = tl.load(entering + (k_load * H + h).to(tl.int64) * PN + offs, mask=mask, other=0.0)
            tl.atomic_add(dchunk_decay + h * NUM_CHUNKS + k, tl.sum(carry * s_in, axis=0))
            s_in = s_in_next.to(tl.float32)
        carry = decay * carry + own
        own = own_next
        decay = decay_next
        k = k_next
    tl.store(last + (d * H + h).to(tl.int64) * PN + offs, carry, mask=mask)


_BLOCKS = candidates(({"BLOCK": 256}, 4, 1), ({"BLOCK": 512}, 4, 1), ({"BLOCK": 1024}, 4, 1), ({"BLOCK": 2048}, 8, 1))
_forward = triton.autotune(_BLOCKS, key=["PN"])(_ssd_kernel_state_passing)
# the backward's decay gradient takes atomic adds, so every tuning trial starts it from zero
_backward = triton.autotune(_BLOCKS, key=["PN"], reset_to_zero=["dchunk_decay"])(_ssd_kernel_state_passing)


def _launch(
    own_states: torch.Tensor,
    entering: torch.Tensor | None,
    chunk_decay: torch.Tensor,
    dchunk_decay: torch.Tensor | None,
    first: torch.Tensor | None,
    plan: ChunkPlan,
    dtype: torch.dtype,
    reverse: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    _, H, P, N = own_states.shape
    carried = torch.empty(own_states.shape, device=own_states.device, dtype=dtype)
    last = torch.empty(plan.num_docs, H, P, N, device=own_states.device, dtype=torch.float32)

    def grid(meta: dict) -> tuple[int, int, int]:
        return (triton.cdiv(P * N, meta["BLOCK"]), H, plan.num_docs)

    (_backward if reverse else _forward)[grid](
        own_states, carried, entering, chunk_decay, dchunk_decay, first, last, plan.doc_chunk_offsets,
        plan.num_chunks, H=H, PN=P * N, HAS_FIRST=first is not None, REVERSE=reverse,
    )  # fmt: skip
    return carried, last


def state_passing_fwd(
    states: torch.Tensor,
    chunk_decay: torch.Tensor,
    initial_state: torch.Tensor | None,
    plan: ChunkPlan,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor]:
    """From own states (fp32), the state entering each chunk in `dtype` and the final state of each document."""
    return _launch(states, None, chunk_decay, None, initial_state, plan, dtype, reverse=False)


def state_passing_bwd(
    dstates: torch.Tensor,
    entering: torch.Tensor,
    chunk_decay: torch.Tensor,
    dfinal_state: torch.Tensor | None,
    plan: ChunkPlan,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """From entering-state gradients (fp32), the leaving-state gradients in the dtype of `entering`, the initial
    state's gradient, and that of each chunk's total log-decay `[H, num_chunks]`."""
    dlog_decay = torch.zeros_like(chunk_decay)
    dleaving, dfirst = _launch(
        dstates, entering, chunk_decay, dlog_decay, dfinal_state, plan, entering.dtype, reverse=True
    )
    return dleaving, dfirst, dlog_decay * chunk_decay
