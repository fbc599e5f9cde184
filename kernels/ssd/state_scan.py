"""The state entering every chunk of a document, from each chunk's own tokens, in one pass per document.

Forward: S_in(k+1) = exp(a_last) S_in(k) + sum_s exp(a_last - a_s) dt_s x_s B_s^T, from the document's initial
state (or zero); the state leaving its last chunk is returned. Backward (REVERSE): the gradient of the state
leaving every chunk, dS_out(k-1) = exp(a_last) dS_out(k) + sum_l exp(a_l) dy_l C_l^T, from the final-state
gradient; the initial state's gradient is returned and each chunk's decay exp(a_last) gets <dS_out, S_in>.
One program walks one document's tokens in blocks with the carry on chip, so the chunks' own states never go
through memory; programs split the head dim, and the longest documents are launched first. Carried states are
written in the matrix-product dtype. Token rows of v and k are addressed through their own row strides (they may
be column slices of a wider tensor).
"""

import torch
import triton
import triton.language as tl

from gristmill.kernels.ssd.blocks import accumulate, lane_width
from gristmill.kernels.ssd.documents import ChunkPlan
from gristmill.kernels.ssd.tuning import candidates


def _blocks_within_chunk(configs: list[triton.Config], named_args: dict, **kwargs) -> list[triton.Config]:
    """A block of tokens must not straddle two chunks."""
    chunk = kwargs.get("CHUNK", named_args.get("CHUNK"))
    fitting = [config for config in configs if config.kwargs["BLOCK_S"] <= chunk]
    return fitting or [triton.Config({**configs[0].kwargs, "BLOCK_S": chunk}, num_warps=4)]


@triton.jit(do_not_specialize=["T", "NUM_CHUNKS"])
def _ssd_kernel_state_scan(
    v,
    dt,
    a,
    k,
    chunk_decay,
    entering,
    carried,
    dchunk_decay,
    first,
    last,
    chunk_start,
    chunk_len,
    doc_chunk_offsets,
    longest_first,
    T,
    NUM_CHUNKS,
    stride_v,
    stride_k,
    H: tl.constexpr,
    G: tl.constexpr,
    P: tl.constexpr,
    N: tl.constexpr,
    CHUNK: tl.constexpr,
    HAS_FIRST: tl.constexpr,
    HAS_LAST: tl.constexpr,
    REVERSE: tl.constexpr,
    BLOCK_S: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    offs_p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    h = tl.program_id(1)
    d = tl.load(longest_first + tl.program_id(2))
    g = h // (H // G)
    offs_n = tl.arange(0, BLOCK_N)
    mask_pn = (offs_p[:, None] < P) & (offs_n[None, :] < N)
    pn = offs_p[:, None] * N + offs_n[None, :]
    k0 = tl.load(doc_chunk_offsets + d)
    n = tl.load(doc_chunk_offsets + d + 1) - k0
    doc_start = tl.load(chunk_start + k0, mask=n > 0, other=0).to(tl.int64)
    doc_len = (n - 1) * CHUNK + tl.load(chunk_len + k0 + n - 1, mask=n > 0, other=0)
    if HAS_FIRST:
        carry = tl.load(first + (d * H + h).to(tl.int64) * P * N + pn, mask=mask_pn, other=0.0).to(tl.float32)
    else:
        carry = tl.zeros([BLOCK_P, BLOCK_N], dtype=tl.float32)
    STEPS = CHUNK // BLOCK_S
    for i in range(n * STEPS):
        if REVERSE:
            j = n - 1 - i // STEPS
            s_first = j * CHUNK + (STEPS - 1 - i % STEPS) * BLOCK_S
        else:
            j = i // STEPS
            s_first = j * CHUNK + (i % STEPS) * BLOCK_S
        if i % STEPS == 0:  # the chunk's first block in walking order hands the carry over
            chunk_states = (((k0 + j) * H + h).to(tl.int64) * P * N) + pn
            tl.store(carried + chunk_states, carry.to(carried.dtype.element_ty), mask=mask_pn)
            if REVERSE:
                s_in = tl.load(entering + chunk_states, mask=mask_pn, other=0.0).to(tl.float32)
                accumulate(dchunk_decay + h * NUM_CHUNKS + k0 + j, tl.sum(tl.sum(carry * s_in, axis=1), axis=0))
            carry *= tl.load(chunk_decay + h * NUM_CHUNKS + k0 + j)
        offs_s = s_first + tl.arange(0, BLOCK_S)
        mask_s = offs_s < doc_len
        t = doc_start + offs_s
        a_s = tl.load(a + h * T + t, mask=mask_s, other=0.0)
        if REVERSE:
            weight = tl.exp(a_s)
        else:
            a_last = tl.load(a + h * T + doc_start + tl.minimum((j + 1) * CHUNK, doc_len) - 1)
            weight = tl.exp(a_last - a_s) * tl.load(dt + h * T + t, mask=mask_s, other=0.0)
        weight = tl.where(mask_s, weight, 0.0)
        # [BLOCK_S, BLOCK_P], [BLOCK_S, BLOCK_N]
        v_s = tl.load(v + t[:, None] * stride_v + h * P + offs_p[None, :], mask=mask_s[:, None] & (offs_p[None, :] < P), other=0.0)
        k_s = tl.load(k + t[:, None] * stride_k + g * N + offs_n[None, :], mask=mask_s[:, None] & (offs_n[None, :] < N), other=0.0)
        carry += tl.dot(tl.trans((v_s * weight[:, None]).to(v_s.dtype)), k_s)
    if HAS_LAST:
        tl.store(last + (d * H + h).to(tl.int64) * P * N + pn, carry, mask=mask_pn)


_CONFIGS = candidates(
    ({"BLOCK_S": 64, "BLOCK_P": 64}, 4, 3),
    ({"BLOCK_S": 64, "BLOCK_P": 64}, 4, 4),
    ({"BLOCK_S": 32, "BLOCK_P": 64}, 4, 4),
    ({"BLOCK_S": 64, "BLOCK_P": 32}, 4, 3),
    ({"BLOCK_S": 128, "BLOCK_P": 64}, 8, 3),
)
_TUNING = {"key": ["P", "N", "CHUNK"], "prune_configs_by": {"early_config_prune": _blocks_within_chunk}}
_forward = triton.autotune(_CONFIGS, **_TUNING)(_ssd_kernel_state_scan)
# the backward's decay gradient takes atomic adds, so every tuning trial starts it from zero
_backward = triton.autotune(_CONFIGS, **_TUNING, reset_to_zero=["dchunk_decay"])(_ssd_kernel_state_scan)


def _launch(
    v: torch.Tensor,
    dt: torch.Tensor | None,
    a: torch.Tensor,
    k: torch.Tensor,
    chunk_decay: torch.Tensor,
    entering: torch.Tensor | None,
    dchunk_decay: torch.Tensor | None,
    first: torch.Tensor | None,
    plan: ChunkPlan,
    dtype: torch.dtype,
    reverse: bool,
    keep_last: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The carried states, and (if `keep_last`) the one leaving each document's walk, an n_docs x 1 MB fp32 buffer
    at the benchmark's head sizes that callers mostly drop."""
    T, H, P = v.shape
    G, N = k.shape[1], k.shape[2]
    carried = torch.empty(plan.num_chunks, H, P, N, device=v.device, dtype=dtype)
    last = torch.empty(plan.num_docs, H, P, N, device=v.device, dtype=torch.float32) if keep_last else None

    def grid(meta: dict) -> tuple[int, int, int]:
        return (triton.cdiv(P, meta["BLOCK_P"]), H, plan.num_docs)

    (_backward if reverse else _forward)[grid](
        v, dt, a, k, chunk_decay, entering, carried, dchunk_decay, first, last,
        plan.chunk_start, plan.chunk_len, plan.doc_chunk_offsets, plan.longest_first, T, plan.num_chunks, v.stride(0), k.stride(0),
        H=H, G=G, P=P, N=N, CHUNK=plan.chunk_size, HAS_FIRST=first is not None, HAS_LAST=keep_last,
        REVERSE=reverse,
        BLOCK_N=lane_width(N),
    )  # fmt: skip
    return carried, last


def state_scan_fwd(
    x: torch.Tensor,
    dt: torch.Tensor,
    a: torch.Tensor,
    B: torch.Tensor,
    chunk_decay: torch.Tensor,
    initial_state: torch.Tensor | None,
    plan: ChunkPlan,
    keep_final_state: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The state entering each chunk `[num_chunks, H, P, N]` in x's dtype (spare chunks unwritten) and each
    document's final state `[n_docs, H, P, N]` in fp32 (None unless kept), from x `[T, H, P]`, dt and `a`
    `[H, T]`, B `[T, G, N]`."""
    return _launch(x, dt, a, B, chunk_decay, None, None, initial_state, plan, x.dtype, False, keep_final_state)


def state_scan_bwd(
    dy: torch.Tensor,
    a: torch.Tensor,
    C: torch.Tensor,
    chunk_decay: torch.Tensor,
    entering: torch.Tensor,
    dfinal_state: torch.Tensor | None,
    plan: ChunkPlan,
    keep_initial_gradient: bool,
    dchunk_decay: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The gradient of the state leaving each chunk in the dtype of `entering` and the initial state's gradient
    (fp32; None unless kept); adds that of each chunk's decay into the zeroed fp32 `dchunk_decay`
    `[H, num_chunks]`."""
    return _launch(
        dy, None, a, C, chunk_decay, entering, dchunk_decay, dfinal_state, plan, entering.dtype, True,
        keep_initial_gradient,
    )  # fmt: skip
