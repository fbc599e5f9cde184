"""Triton SSD scan against the sequential fp32 scan: output, final states and every gradient, over packed
documents with ragged boundaries (length-1 and empty documents, documents starting mid-chunk, one document
spanning the whole row); and a packed row against its documents run one by one."""

from dataclasses import dataclass
from itertools import pairwise

import pytest
import torch
import torch.nn.functional as F

from gristmill.kernels.ssd import ssd_chunked_reference, ssd_reference, ssd_scan
from gristmill.kernels.ssd.documents import plan_chunks
from gristmill.kernels.testing import assert_close

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
ON_GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
ON_CPU = pytest.mark.skipif(torch.cuda.is_available(), reason="tiny shapes are for the CPU interpreter")


@dataclass(frozen=True)
class Case:
    doc_lens: tuple[int, ...]
    heads: int
    groups: int
    head_dim: int
    state_dim: int
    chunk_size: int
    dtype: torch.dtype
    tol: float


CASES = [
    pytest.param(Case((45,), 4, 2, 16, 16, 16, torch.float32, 1e-4), id="f32-one-doc-T45-H4-G2", marks=ON_CPU),
    pytest.param(Case((1, 19, 0, 1, 24), 2, 1, 16, 16, 64, torch.float32, 1e-4), id="f32-len1-empty-T45-H2-L64", marks=ON_CPU),
    pytest.param(Case((7, 33, 40), 4, 4, 16, 32, 32, torch.float32, 1e-4), id="f32-midchunk-T80-G4-N32-L32", marks=ON_CPU),
    pytest.param(Case((1, 1, 1, 1, 1), 2, 2, 16, 16, 16, torch.float32, 1e-4), id="f32-all-len1-T5", marks=ON_CPU),
    # on the GPU: the benchmark's head layouts (32 heads, one group, head dim 64 and 128), groups, chunk 64
    pytest.param(Case((1, 300, 1, 700, 0, 23), 32, 1, 64, 128, 256, torch.bfloat16, 2e-2), id="bf16-ragged-T1025-H32-L256", marks=ON_GPU),
    pytest.param(Case((1500,), 32, 1, 64, 128, 256, torch.bfloat16, 2e-2), id="bf16-one-doc-T1500-H32-L256", marks=ON_GPU),
    pytest.param(Case((130, 1, 377, 99), 32, 1, 128, 128, 256, torch.bfloat16, 2e-2), id="bf16-P128-T607-H32-L256", marks=ON_GPU),
    pytest.param(Case((90, 1, 166), 8, 2, 64, 128, 64, torch.bfloat16, 2e-2), id="bf16-G2-T257-L64", marks=ON_GPU),
    # last, so the index slices below keep their cases. Head dim 24: two head-dim blocks of the interpreter's
    # 16 lanes, the second one partly masked
    pytest.param(Case((20, 29), 2, 1, 24, 16, 32, torch.float32, 1e-4), id="f32-P24-T49-L32", marks=ON_CPU),
]


def make_inputs(case: Case, with_initial: bool) -> tuple[dict[str, torch.Tensor | None], torch.Tensor]:
    """Random leaves in the case's dtype (A, D and the initial state in fp32) plus cu_seqlens."""
    T = sum(case.doc_lens)
    H, G, P, N = case.heads, case.groups, case.head_dim, case.state_dim
    cu = torch.tensor([0, *torch.tensor(case.doc_lens).cumsum(0).tolist()], dtype=torch.int32, device=DEVICE)
    kw = {"device": DEVICE, "dtype": case.dtype}
    leaves = {
        "x": torch.randn(T, H, P, **kw),
        "dt": F.softplus(torch.randn(T, H, device=DEVICE) - 2.0).to(case.dtype),
        "A": -torch.exp(torch.rand(H, device=DEVICE) * 2.0),
        "B": torch.randn(T, G, N, **kw) / N**0.5,
        "C": torch.randn(T, G, N, **kw) / N**0.5,
        "D": torch.randn(H, device=DEVICE),
        "initial_state": torch.randn(len(case.doc_lens), H, P, N, device=DEVICE) if with_initial else None,
    }
    return leaves, cu


def run_scan(fn, leaves: dict, cu: torch.Tensor, chunk_size: int, upcast: bool, dy, dfinal):
    """Output, final state and gradients of <y, dy> + <final, dfinal> w.r.t. every leaf given."""
    args = {k: (None if v is None else (v.float() if upcast else v).detach().requires_grad_()) for k, v in leaves.items()}
    y, final = fn(
        args["x"], args["dt"], args["A"], args["B"], args["C"], D=args["D"], cu_seqlens=cu,
        chunk_size=chunk_size, initial_state=args["initial_state"], return_final_state=True,
    )  # fmt: skip
    loss = (y.float() * dy).sum() + (final.float() * dfinal).sum()
    wrt = [v for v in args.values() if v is not None]
    grads = dict(zip([k for k, v in args.items() if v is not None], torch.autograd.grad(loss, wrt)))
    return y, final, grads


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("with_initial", [False, True], ids=["zero-state", "initial-state"])
def test_ssd_scan(case: Case, with_initial: bool) -> None:
    torch.manual_seed(0)
    leaves, cu = make_inputs(case, with_initial)
    H, P, N = case.heads, case.head_dim, case.state_dim
    dy = torch.randn(sum(case.doc_lens), H, P, device=DEVICE)
    dfinal = torch.randn(len(case.doc_lens), H, P, N, device=DEVICE)
    y, final, grads = run_scan(ssd_scan, leaves, cu, case.chunk_size, False, dy, dfinal)
    y_ref, final_ref, grads_ref = run_scan(ssd_reference, leaves, cu, case.chunk_size, True, dy, dfinal)
    assert y.dtype == case.dtype
    assert_close("y", y, y_ref, case.tol)
    assert_close("final_state", final, final_ref, case.tol)
    for name in grads_ref:
        assert_close("d" + name, grads[name], grads_ref[name], case.tol)


@pytest.mark.parametrize("case", CASES[:3] + CASES[4:6])
def test_ssd_scan_packed_matches_documents_one_by_one(case: Case) -> None:
    torch.manual_seed(1)
    leaves, cu = make_inputs(case, with_initial=True)
    T, H, P, N = sum(case.doc_lens), case.heads, case.head_dim, case.state_dim
    dy = torch.randn(T, H, P, device=DEVICE)
    dfinal = torch.randn(len(case.doc_lens), H, P, N, device=DEVICE)
    y, final, grads = run_scan(ssd_scan, leaves, cu, case.chunk_size, False, dy, dfinal)
    bounds = cu.tolist()
    sums = {name: torch.zeros_like(grad) for name, grad in grads.items()}
    for doc, (begin, end) in enumerate(pairwise(bounds)):
        if begin == end:
            continue
        piece = {k: v[begin:end] if k in ("x", "dt", "B", "C") else v for k, v in leaves.items()}
        piece["initial_state"] = leaves["initial_state"][doc : doc + 1]
        one_cu = torch.tensor([0, end - begin], dtype=torch.int32, device=DEVICE)
        y_doc, final_doc, grads_doc = run_scan(
            ssd_scan, piece, one_cu, case.chunk_size, False, dy[begin:end], dfinal[doc : doc + 1]
        )
        assert_close(f"y of document {doc}", y[begin:end], y_doc, 1e-3)
        assert_close(f"final state of document {doc}", final[doc : doc + 1], final_doc, 1e-3)
        for name, grad in grads_doc.items():
            if name in ("x", "dt", "B", "C"):
                sums[name][begin:end] = grad
            elif name == "initial_state":
                sums[name][doc : doc + 1] = grad
            else:
                sums[name] += grad
    for name, grad in grads.items():
        if name == "initial_state":
            grad = grad[[i for i, n in enumerate(case.doc_lens) if n > 0]]
            sums[name] = sums[name][[i for i, n in enumerate(case.doc_lens) if n > 0]]
        assert_close("d" + name, grad, sums[name], 1e-3)


@pytest.mark.parametrize("case", CASES[1:2] + CASES[4:5])
def test_ssd_scan_without_final_state_matches_a_zero_final_gradient(case: Case) -> None:
    """Without return_final_state the final states and the initial-state gradient are never formed."""
    torch.manual_seed(3)
    leaves, cu = make_inputs(case, with_initial=False)
    dy = torch.randn(sum(case.doc_lens), case.heads, case.head_dim, device=DEVICE)
    dfinal = torch.zeros(len(case.doc_lens), case.heads, case.head_dim, case.state_dim, device=DEVICE)
    y_full, _, grads_full = run_scan(ssd_scan, leaves, cu, case.chunk_size, False, dy, dfinal)
    args = {k: None if v is None else v.detach().requires_grad_() for k, v in leaves.items()}
    y = ssd_scan(
        args["x"], args["dt"], args["A"], args["B"], args["C"], D=args["D"], cu_seqlens=cu, chunk_size=case.chunk_size
    )
    grads = torch.autograd.grad((y.float() * dy).sum(), [args[name] for name in grads_full])
    assert torch.equal(y, y_full)
    for name, grad in zip(grads_full, grads):
        assert_close("d" + name, grad, grads_full[name], 1e-3)  # atomics may add in another order


@pytest.mark.parametrize("case", CASES[1:2] + CASES[4:5])
def test_ssd_scan_reads_column_slices_in_place(case: Case) -> None:
    """x, B and C as column slices of one wide tensor (rows far apart) give what their contiguous copies give."""
    torch.manual_seed(3)
    leaves, cu = make_inputs(case, with_initial=False)
    T, H, P, N = sum(case.doc_lens), case.heads, case.head_dim, case.state_dim
    dy = torch.randn(T, H, P, device=DEVICE)
    dfinal = torch.randn(len(case.doc_lens), H, P, N, device=DEVICE)
    names = ("x", "B", "C")
    widths = [leaves[k][0].numel() for k in names] + [3]  # 3 unused columns after C
    padding = torch.zeros(T, 3, device=DEVICE, dtype=case.dtype)
    wide = torch.cat([leaves[k].flatten(1) for k in names] + [padding], dim=1).requires_grad_()
    x, B, C = (part.view(leaves[k].shape) for k, part in zip(names, wide.split(widths, dim=1)))
    y, final = ssd_scan(
        x, leaves["dt"], leaves["A"], B, C, D=leaves["D"], cu_seqlens=cu, chunk_size=case.chunk_size,
        return_final_state=True,
    )  # fmt: skip
    (dwide,) = torch.autograd.grad((y.float() * dy).sum() + (final * dfinal).sum(), [wide])
    y_ref, final_ref, grads_ref = run_scan(ssd_scan, leaves, cu, case.chunk_size, False, dy, dfinal)
    assert_close("y", y, y_ref, 1e-6)
    assert_close("final_state", final, final_ref, 1e-6)
    for name, grad in zip(names, dwide.split(widths, dim=1)):
        assert_close("d" + name, grad.view(leaves[name].shape), grads_ref[name], 1e-6)


@pytest.mark.parametrize("chunk_size", [16, 32])
def test_ssd_chunked_reference_matches_sequential(chunk_size: int) -> None:
    torch.manual_seed(2)
    case = Case((3, 1, 40, 20), 4, 2, 16, 16, chunk_size, torch.float32, 1e-5)
    leaves, cu = make_inputs(case, with_initial=False)
    args = [leaves[k] for k in ("x", "dt", "A", "B", "C")]
    y = ssd_chunked_reference(*args, D=leaves["D"], cu_seqlens=cu, chunk_size=chunk_size)
    assert_close("y", y, ssd_reference(*args, D=leaves["D"], cu_seqlens=cu), 1e-5)


def test_chunk_plan_launches_longest_documents_first() -> None:
    lengths = torch.randint(0, 200, (12,))
    cu = torch.zeros(13, dtype=torch.int32)
    cu[1:] = torch.cumsum(lengths, 0)
    plan = plan_chunks(cu, int(cu[-1]), 16)
    doc_chunks = plan.doc_chunk_offsets.diff()
    order = plan.longest_first.long()
    assert sorted(order.tolist()) == list(range(12)), order
    assert (doc_chunks[order].diff() <= 0).all(), (doc_chunks, order)


def _valid_args() -> dict:
    T, H, G, P, N = 8, 4, 2, 16, 16
    return {
        "x": torch.randn(T, H, P, device=DEVICE),
        "dt": torch.rand(T, H, device=DEVICE),
        "A": -torch.rand(H, device=DEVICE),
        "B": torch.randn(T, G, N, device=DEVICE),
        "C": torch.randn(T, G, N, device=DEVICE),
    }


@pytest.mark.parametrize(
    "change, message",
    [
        ({"cu_seqlens": torch.tensor([0, 3, 7], dtype=torch.int32)}, "cu_seqlens"),
        ({"cu_seqlens": torch.tensor([0, 5, 3, 8], dtype=torch.int32)}, "cu_seqlens"),
        ({"cu_seqlens": torch.tensor([0, 8])}, "cu_seqlens"),
        ({"B": torch.randn(8, 3, 16)}, "divisible"),
        ({"dt": torch.rand(8, 3)}, "dt"),
        ({"chunk_size": 48}, "chunk_size"),
        ({"initial_state": torch.zeros(2, 4, 16, 16)}, "initial_state"),
    ],
    ids=["cu-end", "cu-decreasing", "cu-int64", "groups", "dt-shape", "chunk-size", "initial-state-docs"],
)
def test_ssd_scan_rejects_bad_arguments(change: dict, message: str) -> None:
    args = _valid_args()
    change = {k: v.to(DEVICE) if isinstance(v, torch.Tensor) else v for k, v in change.items()}
    if "B" in change:
        change["C"] = change["B"]
    args.update(change)
    positional = [args.pop(k) for k in ("x", "dt", "A", "B", "C")]
    with pytest.raises(ValueError, match=message):
        ssd_scan(*positional, **args)


def test_ssd_scan_rechecks_cu_seqlens_edited_in_place() -> None:
    """Offsets are checked once per tensor version, so an in-place edit must be checked again."""
    args = _valid_args()
    cu = torch.tensor([0, 3, 8], dtype=torch.int32, device=DEVICE)
    positional = [args.pop(k) for k in ("x", "dt", "A", "B", "C")]
    ssd_scan(*positional, cu_seqlens=cu, chunk_size=16)
    cu[1] = 9
    with pytest.raises(ValueError, match="cu_seqlens"):
        ssd_scan(*positional, cu_seqlens=cu, chunk_size=16)
