"""Plain-PyTorch SSD over packed documents, in two forms that restart the state at every `cu_seqlens` boundary.

- `ssd_reference`: token by token, obviously right and slow; the oracle every other SSD path is tested against.
- `ssd_chunked_reference`: the chunked algorithm in einsums, the CPU path of the trainer and the benchmark's
  PyTorch baseline; differentiable by autograd and free of host syncs after the first check of an offsets tensor.

Per head, with state h `[P, N]`: h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T, y_t = h_t C_t + D x_t.
"""

from itertools import pairwise

import torch
import torch.nn.functional as F

from gristmill.kernels.ssd.documents import cached_token_doc_start, whole_stream
from gristmill.kernels.ssd.validation import check_cu_seqlens_values, check_ssd_inputs

ScanOutput = torch.Tensor | tuple[torch.Tensor, torch.Tensor]

_RESET_LOG_DECAY = -1.0e4
"""Log decay given to a document's first token: its exponent is exactly 0 in fp32, so no state crosses."""


def ssd_reference(
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
    """The oracle: a token-by-token scan in fp32; `chunk_size` is accepted for signature parity and ignored."""
    check_ssd_inputs(x, dt, A, B, C, D, cu_seqlens, chunk_size, initial_state)
    T, H, P = x.shape
    cu = whole_stream(T, x.device) if cu_seqlens is None else cu_seqlens
    check_cu_seqlens_values(cu, T)
    heads_per_group = H // B.shape[1]
    Bh = B.float().repeat_interleave(heads_per_group, dim=1)
    Ch = C.float().repeat_interleave(heads_per_group, dim=1)
    xf, dtf, Af = x.float(), dt.float(), A.float()
    bounds = cu.tolist()
    ys, finals = [], []
    for doc, (begin, end) in enumerate(pairwise(bounds)):
        if initial_state is None:
            state = xf.new_zeros(H, P, Bh.shape[-1])
        else:
            state = initial_state[doc].float()
        for t in range(begin, end):
            decay = torch.exp(dtf[t] * Af)[:, None, None]
            state = decay * state + (dtf[t][:, None] * xf[t])[:, :, None] * Bh[t][:, None, :]
            ys.append(torch.einsum("hpn,hn->hp", state, Ch[t]))
        finals.append(state)
    y = torch.stack(ys) if ys else xf.new_zeros(0, H, P)
    if D is not None:
        y = y + D.float()[None, :, None] * xf
    y = y.to(x.dtype)
    return (y, torch.stack(finals)) if return_final_state else y


def ssd_chunked_reference(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    *,
    D: torch.Tensor | None = None,
    cu_seqlens: torch.Tensor | None = None,
    chunk_size: int = 256,
) -> torch.Tensor:
    """The fast CPU path: the SSD chunked algorithm in fp32, returning y in x's dtype; tested against `ssd_reference`.

    A document start resets the state by taking `_RESET_LOG_DECAY` as its log decay. Sums of log decays are
    always taken directly over their range, never as a difference of prefix sums, so a reset never cancels
    against itself and in-document decays keep full precision. Materializes `[chunks, H, L, L]` and
    `[H, chunks, chunks]` decays.
    """
    check_ssd_inputs(x, dt, A, B, C, D, cu_seqlens, chunk_size, None)
    total, heads, head_dim = x.shape
    out_dtype = x.dtype
    x, dt, A, B, C = (t.float() for t in (x, dt, A, B, C))
    B = B.repeat_interleave(heads // B.shape[1], dim=1)
    C = C.repeat_interleave(heads // C.shape[1], dim=1)
    log_decay = dt * A
    if cu_seqlens is not None:
        starts = cached_token_doc_start(cu_seqlens, total) == torch.arange(total, device=x.device)
        log_decay = log_decay.masked_fill(starts[:, None], _RESET_LOG_DECAY)

    pad = -total % chunk_size
    chunks = (total + pad) // chunk_size

    def to_chunks(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, 0) * (t.dim() - 1) + (0, pad)).view(chunks, chunk_size, *t.shape[1:])

    xc, dtc, Bc, Cc = map(to_chunks, (x, dt, B, C))
    la = to_chunks(log_decay).transpose(1, 2)  # [c, H, Q]

    # every einsum below has two operands, so none can build a [c, Q, H, P, N] intermediate
    dt_by_head = dtc.transpose(1, 2)  # [c, H, Q]
    sums = _segment_sums(la)  # [c, H, Q, Q]
    scores = torch.einsum("cihn,cjhn->chij", Cc, Bc) * torch.exp(sums) * dt_by_head[:, :, None, :]
    y = torch.einsum("chij,cjhp->cihp", scores, xc)

    to_end = torch.exp(sums[..., -1, :]) * dt_by_head  # [c, H, Q]: sum(la[j+1:]), from j to the chunk's end
    chunk_states = torch.einsum("cjhn,cjhp->chpn", Bc, xc * to_end.transpose(1, 2)[..., None])
    # the state entering chunk i + 1: each chunk j <= i's own state, decayed over chunks j + 1 .. i; one einsum
    # instead of a loop over chunks, so a compiled graph does not grow with the number of chunks
    between = torch.exp(_segment_sums(la.sum(-1).transpose(0, 1)))  # [H, c(i), c(j)]
    entering = torch.einsum("hij,jhpn->ihpn", between[:, :-1], chunk_states)
    entering = F.pad(entering, (0, 0, 0, 0, 0, 0, 1, 0))  # nothing enters the first chunk
    from_start = torch.exp(la[..., :1] + sums[..., :, 0])  # [c, H, Q]: sum(la[:i+1])
    y = y + torch.einsum("cihn,chpn->cihp", Cc, entering) * from_start.transpose(1, 2)[..., None]

    y = y.reshape(chunks * chunk_size, heads, head_dim)[:total]
    if D is not None:
        y = y + D.float()[:, None] * x
    return y.to(out_dtype)


def _segment_sums(la: torch.Tensor) -> torch.Tensor:
    """[..., Q] -> [..., Q, Q]: entry (i, j) is sum(la[j+1 : i+1]) for i >= j, -inf above the diagonal."""
    size = la.shape[-1]
    lower = torch.ones(size, size, dtype=torch.bool, device=la.device).tril()
    spread = la[..., :, None].expand(*la.shape, size)  # [..., Q(k), Q(j)] holding la[k]
    sums = _RowPrefixSum.apply(spread.masked_fill(~lower.tril(-1), 0.0))  # [..., Q(i), Q(j)]
    return sums.masked_fill(~lower, float("-inf"))


class _RowPrefixSum(torch.autograd.Function):
    """torch.cumsum over dim -2 whose backward takes the sums from each row to the end without flipping.
    torch.cumsum's own backward flips, scans and flips, and torch 2.11's inductor fails to generate code for a
    flip feeding a scan, so the chunked reference could not run under torch.compile (the end-to-end
    benchmark's baseline). The gradients hold no reset decays, so total minus prefix loses no precision that
    matters here (tested against the sequential scan)."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, values: torch.Tensor) -> torch.Tensor:
        return torch.cumsum(values, dim=-2)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        return grad.sum(dim=-2, keepdim=True) - torch.cumsum(grad, dim=-2) + grad
