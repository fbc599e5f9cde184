"""Mamba2 sequence mixing in plain PyTorch: the SSD chunked scan and the short causal conv.

Both take the packed layout (tokens flattened to T) and restart at every `cu_seqlens` boundary. The
chunked scan resets state by giving the decay at a segment start a log value so negative that its exponent
is exactly zero; sums of log decays are always taken directly over their range (never as a difference of
prefix sums), so a reset never cancels against itself and in-segment decays keep full precision.
"""

import torch
import torch.nn.functional as F

from gristmill.trainer.reference.segments import positions_in_segment, segment_starts

_RESET_LOG_DECAY = -1.0e4


def ssd_scan(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    *,
    D: torch.Tensor | None = None,
    cu_seqlens: torch.Tensor | None = None,
    chunk_size: int = 64,
) -> torch.Tensor:
    """x [T, H, P], dt [T, H] (positive), A [H] (negative), B/C [T, G, N] -> y [T, H, P], in x's dtype.

    h_t = exp(dt_t A) h_{t-1} + dt_t B_t x_t^T and y_t = C_t h_t + D x_t, with h = 0 at each segment start.
    """
    total, heads, head_dim = x.shape
    out_dtype = x.dtype
    x, dt, A, B, C = (t.float() for t in (x, dt, A, B, C))
    B = B.repeat_interleave(heads // B.shape[1], dim=1)
    C = C.repeat_interleave(heads // C.shape[1], dim=1)
    log_decay = dt * A
    if cu_seqlens is not None:
        log_decay = log_decay.masked_fill(segment_starts(cu_seqlens, total)[:, None], _RESET_LOG_DECAY)

    pad = -total % chunk_size
    chunks = (total + pad) // chunk_size

    def to_chunks(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, 0) * (t.dim() - 1) + (0, pad)).view(chunks, chunk_size, *t.shape[1:])

    xc, dtc, Bc, Cc = map(to_chunks, (x, dt, B, C))
    la = to_chunks(log_decay).transpose(1, 2)  # [c, H, Q]

    within = torch.exp(_segment_sums(la))  # [c, H, Q, Q]
    y = torch.einsum("cihn,cjhn,chij,cjh,cjhp->cihp", Cc, Bc, within, dtc, xc)

    to_end = torch.exp(_sums_after(la))  # [c, H, Q]
    chunk_states = torch.einsum("cjhn,chj,cjh,cjhp->chpn", Bc, to_end, dtc, xc)
    chunk_decay = torch.exp(la.sum(-1))  # [c, H]
    state = torch.zeros_like(chunk_states[0])
    entering = []
    for c in range(chunks):
        entering.append(state)
        state = chunk_decay[c, :, None, None] * state + chunk_states[c]
    from_start = torch.exp(torch.cumsum(la, dim=-1))  # [c, H, Q]
    y = y + torch.einsum("cihn,chpn,chi->cihp", Cc, torch.stack(entering), from_start)

    y = y.reshape(chunks * chunk_size, heads, head_dim)[:total]
    if D is not None:
        y = y + D.float()[:, None] * x
    return y.to(out_dtype)


def _segment_sums(la: torch.Tensor) -> torch.Tensor:
    """[..., Q] -> [..., Q, Q]: entry (i, j) is sum(la[j+1 : i+1]) for i >= j, -inf above the diagonal."""
    size = la.shape[-1]
    lower = torch.ones(size, size, dtype=torch.bool, device=la.device).tril()
    spread = la[..., :, None].expand(*la.shape, size)  # [..., Q(k), Q(j)] holding la[k]
    sums = torch.cumsum(spread.masked_fill(~lower.tril(-1), 0.0), dim=-2)  # [..., Q(i), Q(j)]
    return sums.masked_fill(~lower, float("-inf"))


def _sums_after(la: torch.Tensor) -> torch.Tensor:
    """[..., Q] -> [..., Q]: entry j is sum(la[j+1:]), the log decay from position j to the chunk's end."""
    suffix = torch.flip(torch.cumsum(torch.flip(la, (-1,)), dim=-1), (-1,))
    return F.pad(suffix[..., 1:], (0, 1))


def causal_conv1d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    cu_seqlens: torch.Tensor | None = None,
    activation: str | None = "silu",
) -> torch.Tensor:
    """Depthwise causal conv: x [T, C], weight [C, W] -> [T, C]; weight[:, -1] multiplies the current token.

    A tap that would reach back past the start of the token's segment reads zero, as if each document were
    padded on the left on its own.
    """
    total = x.shape[0]
    width = weight.shape[1]
    position = positions_in_segment(cu_seqlens, total) if cu_seqlens is not None else torch.arange(total)
    position = position.to(x.device)
    out = x * weight[:, width - 1]
    for shift in range(1, width):
        earlier = F.pad(x, (0, 0, shift, 0))[:total]
        out = out + earlier * weight[:, width - 1 - shift] * (position >= shift)[:, None]
    if bias is not None:
        out = out + bias
    if activation == "silu":
        out = F.silu(out)
    elif activation is not None:
        raise ValueError(f"activation: {activation!r} is not one of 'silu', None")
    return out
