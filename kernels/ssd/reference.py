"""Plain-PyTorch SSD: a sequential scan (ground truth and the CPU path) and a chunked form (the benchmark's
PyTorch baseline). Both restart the state at every `cu_seqlens` boundary; both are differentiable by autograd.

Per head, with state h `[P, N]`: h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T, y_t = h_t C_t + D x_t.
"""

from itertools import pairwise

import torch

from gristmill.kernels.ssd.documents import whole_stream
from gristmill.kernels.ssd.validation import check_cu_seqlens_values, check_ssd_inputs

ScanOutput = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


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
    """Token-by-token scan in fp32; `chunk_size` is accepted for signature parity and ignored."""
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
    """The SSD chunked algorithm in fp32 einsums; resets inside a chunk mask the decay by document id.

    Materializes `[chunks, H, L, L]` decays and `[chunks, H, P, N]` states, so it is a baseline, not a path.
    """
    check_ssd_inputs(x, dt, A, B, C, D, cu_seqlens, chunk_size, None)
    T, H, P = x.shape
    L = chunk_size
    heads_per_group = H // B.shape[1]
    cu = whole_stream(T, x.device) if cu_seqlens is None else cu_seqlens
    check_cu_seqlens_values(cu, T)
    pad = (-T) % L
    doc = torch.searchsorted(cu, torch.arange(T, device=x.device, dtype=cu.dtype), right=True) - 1
    doc = torch.nn.functional.pad(doc, (0, pad), value=-1).view(-1, L)

    def chunked(t: torch.Tensor) -> torch.Tensor:
        t = torch.nn.functional.pad(t.float(), (0, 0) * (t.dim() - 1) + (0, pad))
        return t.view(-1, L, *t.shape[1:])

    xc, dtc = chunked(x), chunked(dt)
    Bc = chunked(B).repeat_interleave(heads_per_group, dim=2)
    Cc = chunked(C).repeat_interleave(heads_per_group, dim=2)
    a = torch.cumsum(dtc * A.float(), dim=1)  # [c, L, H]
    same_doc = doc[:, :, None] == doc[:, None, :]  # [c, l, s]
    causal = torch.ones(L, L, dtype=torch.bool, device=x.device).tril()
    diff = a[:, :, None, :] - a[:, None, :, :]  # [c, l, s, H]
    keep = (same_doc & causal)[..., None]
    decay = torch.exp(torch.where(keep, diff, torch.full_like(diff, float("-inf"))))
    scores = torch.einsum("clhn,cshn->clsh", Cc, Bc) * decay * dtc[:, None, :, :]
    y = torch.einsum("clsh,cshp->clhp", scores, xc)

    last_doc = doc[:, -1:]
    to_end = torch.exp(a[:, -1:, :] - a) * (doc == last_doc)[..., None]  # [c, L, H]
    local = torch.einsum("clh,clhp,clhn->chpn", to_end * dtc, xc, Bc)
    prev_doc = torch.cat([doc.new_full((1,), -1), doc[:-1, -1]])  # document of the token before each chunk
    carried = prev_doc == last_doc[:, 0]
    states = [torch.zeros_like(local[0])]
    for k in range(local.shape[0] - 1):
        keep_state = carried[k].float() * torch.exp(a[k, -1])[:, None, None]
        states.append(keep_state * states[-1] + local[k])
    entering = torch.stack(states)
    from_start = torch.exp(a) * (doc == prev_doc[:, None])[..., None]
    y = y + torch.einsum("clh,clhn,chpn->clhp", from_start, Cc, entering)
    y = y.reshape(-1, H, P)[:T]
    if D is not None:
        y = y + D.float()[None, :, None] * x.float()
    return y.to(x.dtype)
