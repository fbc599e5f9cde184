"""flash_attention_varlen against the fp32 reference: output and all three gradients, ragged documents."""

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

from gristmill.kernels.attention import attention_reference, flash_attention_varlen
from gristmill.kernels.attention.descriptors import descriptors_usable
from gristmill.kernels.testing import assert_close

TOLERANCE = {torch.bfloat16: 1e-2, torch.float16: 1e-3}
ON_GPU = torch.cuda.is_available()
DEVICE = "cuda" if ON_GPU else "cpu"

# Padding rows of a tile compute values that are never stored; numpy warns about them in the interpreter.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


@dataclass(frozen=True)
class Case:
    cu_seqlens: tuple[int, ...]
    heads_q: int
    heads_kv: int
    head_dim: int
    dtype: torch.dtype
    causal: bool = True
    window: int | None = None

    def __str__(self) -> str:
        docs = len(self.cu_seqlens) - 1
        mask = f"window{self.window}" if self.window else ("causal" if self.causal else "full")
        dtype = str(self.dtype).removeprefix("torch.")
        return f"T{self.cu_seqlens[-1]}-N{docs}-H{self.heads_q}x{self.heads_kv}-D{self.head_dim}-{dtype}-{mask}"


def ragged(lengths: list[int]) -> tuple[int, ...]:
    bounds = [0]
    for length in lengths:
        bounds.append(bounds[-1] + length)
    return tuple(bounds)


# Both lists use the same four (head dim, dtype, masking) kinds, so the GPU run autotunes each kind once.
CPU_CASES = [
    Case(ragged([96]), 2, 1, 128, torch.bfloat16),
    Case(ragged([1, 1, 38, 1, 55]), 2, 2, 64, torch.float16),
    Case(ragged([0, 37, 0, 59]), 4, 2, 128, torch.bfloat16, window=24),
    Case(ragged([17, 33, 1, 45]), 2, 1, 64, torch.float16, causal=False),
    Case(ragged([3, 61]), 2, 1, 128, torch.bfloat16, window=1),
]
GPU_CASES = [
    Case(ragged([1, 700, 1, 3000, 129, 1, 4361]), 8, 2, 128, torch.bfloat16),
    Case(ragged([4096]), 4, 4, 64, torch.float16),
    Case(ragged([2048, 1, 1000, 1047]), 8, 2, 128, torch.bfloat16, window=256),
    Case(ragged([513, 1, 1534]), 4, 1, 64, torch.float16, causal=False),
]
CASES = CPU_CASES + (GPU_CASES if ON_GPU else [])


@pytest.fixture
def nan_filled_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fresh float buffers start as NaN, so an output element the kernel never writes fails the test."""
    real_empty = torch.empty

    def empty(*args, **kwargs) -> torch.Tensor:
        out = real_empty(*args, **kwargs)
        return out.fill_(float("nan")) if out.is_floating_point() else out

    monkeypatch.setattr(torch, "empty", empty)


def make_inputs(case: Case) -> tuple[torch.Tensor, ...]:
    total = case.cu_seqlens[-1]
    q = torch.randn(total, case.heads_q, case.head_dim, device=DEVICE, dtype=case.dtype)
    k = torch.randn(total, case.heads_kv, case.head_dim, device=DEVICE, dtype=case.dtype)
    v = torch.randn(total, case.heads_kv, case.head_dim, device=DEVICE, dtype=case.dtype)
    cu_seqlens = torch.tensor(case.cu_seqlens, dtype=torch.int32, device=DEVICE)
    return q, k, v, cu_seqlens


def max_seqlen_of(cu_seqlens: tuple[int, ...]) -> int:
    return max(end - start for start, end in zip(cu_seqlens[:-1], cu_seqlens[1:]))


@pytest.mark.parametrize("case", CASES, ids=str)
def test_flash_attention_varlen(case: Case, nan_filled_empty: None) -> None:
    torch.manual_seed(0)
    q, k, v, cu_seqlens = make_inputs(case)
    max_seqlen = max_seqlen_of(case.cu_seqlens)
    settings = dict(causal=case.causal, window=case.window)
    leaves = [x.clone().requires_grad_() for x in (q, k, v)]
    out = flash_attention_varlen(*leaves, cu_seqlens, max_seqlen, **settings)
    grad_out = torch.randn_like(out)
    out.backward(grad_out)

    ref_leaves = [x.float().requires_grad_() for x in (q, k, v)]
    ref = attention_reference(*ref_leaves, cu_seqlens, max_seqlen, **settings)
    ref.backward(grad_out.float())

    tol = TOLERANCE[case.dtype]
    assert_close("out", out, ref, tol)
    for name, leaf, ref_leaf in zip(("dq", "dk", "dv"), leaves, ref_leaves):
        assert_close(name, leaf.grad, ref_leaf.grad, tol)


UNALIGNED_CASES = [
    Case(ragged([37, 1, 58]), 2, 1, 64, torch.bfloat16),
    Case(ragged([37, 1, 58]), 2, 1, 64, torch.bfloat16, window=20),
    Case(ragged([37, 1, 58]), 2, 2, 64, torch.bfloat16, causal=False),
]


@pytest.mark.parametrize("case", UNALIGNED_CASES, ids=str)
def test_unaligned_rows_read_through_pointers(case: Case, nan_filled_empty: None) -> None:
    """Rows whose stride is not a multiple of 16 bytes cannot be read through tensor descriptors: the dk/dv
    kernel falls back to pointers (and separate masked and unmasked loops) and must give the same gradients."""
    torch.manual_seed(0)
    total, width = case.cu_seqlens[-1], case.heads_q * case.head_dim + 4  # 264-byte rows
    q, k, v = (torch.randn(total, width, device=DEVICE, dtype=case.dtype)[:, 4:4 + heads * case.head_dim]
               .unflatten(1, (heads, case.head_dim)) for heads in (case.heads_q, case.heads_kv, case.heads_kv))
    assert not descriptors_usable(q)
    cu_seqlens = torch.tensor(case.cu_seqlens, dtype=torch.int32, device=DEVICE)
    settings = dict(causal=case.causal, window=case.window)
    leaves = [x.detach().requires_grad_() for x in (q, k, v)]
    out = flash_attention_varlen(*leaves, cu_seqlens, 58, **settings)
    grad_out = torch.randn_like(out)
    out.backward(grad_out)
    ref_leaves = [x.detach().float().requires_grad_() for x in (q, k, v)]
    attention_reference(*ref_leaves, cu_seqlens, 58, **settings).backward(grad_out.float())
    for name, leaf, ref_leaf in zip(("dq", "dk", "dv"), leaves, ref_leaves):
        assert_close(name, leaf.grad, ref_leaf.grad, TOLERANCE[case.dtype])


def test_scores_growing_along_the_row(nan_filled_empty: None) -> None:
    """Key norms grow along the document, so row maxima keep rising far past exp2's fp32 range (2^128): the
    forward must rescale its accumulator mid-row, in unmasked tiles too (a skipped rescale gives NaN here)."""
    torch.manual_seed(0)
    length = 1024 if ON_GPU else 96
    q, k, v, cu_seqlens = make_inputs(Case((0, length), 2, 1, 128, torch.bfloat16))
    growth = 1 + 96 * torch.arange(length, device=DEVICE) / length
    k = (k.float() * growth[:, None, None]).to(k.dtype)
    out = flash_attention_varlen(q, k, v, cu_seqlens, length)
    ref = attention_reference(q.float(), k.float(), v.float(), cu_seqlens, length)
    assert_close("out", out, ref, TOLERANCE[torch.bfloat16])


@pytest.mark.parametrize("causal, window", [(True, None), (False, None), (True, 5)])
def test_reference_matches_sdpa(causal: bool, window: int | None) -> None:
    """The ground truth itself, on one document, against PyTorch's own attention with an explicit mask."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(23, 4, 16, dtype=torch.float64) for _ in range(3))
    cu_seqlens = torch.tensor([0, 23], dtype=torch.int32)
    ref = attention_reference(q, k, v, cu_seqlens, 23, causal=causal, window=window)
    rows, cols = torch.arange(23)[:, None], torch.arange(23)[None, :]
    mask = torch.ones(23, 23, dtype=torch.bool)
    if causal:
        mask &= cols <= rows
    if window is not None:
        mask &= rows - cols < window
    sdpa = F.scaled_dot_product_attention(*(x.transpose(0, 1) for x in (q, k, v)), attn_mask=mask)
    assert_close("reference", ref, sdpa.transpose(0, 1), 1e-6)  # reference runs in fp32


def test_empty_batch() -> None:
    q, k, v, cu_seqlens = make_inputs(Case((0, 0), 2, 1, 64, torch.bfloat16))
    leaves = [x.clone().requires_grad_() for x in (q, k, v)]
    out = flash_attention_varlen(*leaves, cu_seqlens, 0)
    out.sum().backward()
    assert out.shape == (0, 2, 64) and leaves[1].grad.shape == (0, 1, 64)


def test_inference_mode() -> None:
    """Inference tensors carry no version counter; the offsets check must still run on them."""
    with torch.inference_mode():
        q, k, v, cu_seqlens = make_inputs(Case((0, 5, 40), 2, 1, 64, torch.float16))
        out = flash_attention_varlen(q, k, v, cu_seqlens, 35)
        ref = attention_reference(q.float(), k.float(), v.float(), cu_seqlens, 35)
        with pytest.raises(ValueError, match="max_seqlen=34"):
            flash_attention_varlen(q, k, v, cu_seqlens, 34)
    assert_close("out", out, ref, TOLERANCE[torch.float16])


def test_unsupported_head_dim_falls_back_to_reference() -> None:
    q, k, v, cu_seqlens = make_inputs(Case((0, 5, 12), 2, 1, 32, torch.bfloat16))
    with pytest.warns(UserWarning, match="head dim 32"):
        out = flash_attention_varlen(q, k, v, cu_seqlens, 7)
    assert_close("out", out, attention_reference(q, k, v, cu_seqlens, 7), 1e-2)


BAD_INPUTS = {
    "cu_seqlens int64": (dict(cu_seqlens=[0, 8, 16], cu_dtype=torch.int64), "int32"),
    "cu_seqlens not from 0": (dict(cu_seqlens=[1, 8, 16]), "from 0 to T=16"),
    "cu_seqlens short of T": (dict(cu_seqlens=[0, 8, 15]), "from 0 to T=16"),
    "cu_seqlens decreasing": (dict(cu_seqlens=[0, 9, 8, 16]), "non-decreasing"),
    "max_seqlen too small": (dict(max_seqlen=7), "max_seqlen=7"),
    "heads not divisible": (dict(heads_kv=3), "kv heads"),
    "window without causal": (dict(causal=False, window=4), "causal=True"),
    "window zero": (dict(window=0), "window"),
    "head dims differ": (dict(k_head_dim=32), "head dim"),
    "softmax_scale negative": (dict(softmax_scale=-0.1), "softmax_scale"),
}


@pytest.mark.parametrize("change", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_rejects_bad_inputs(change: tuple[dict, str]) -> None:
    spec, message = change
    q = torch.randn(16, 4, 64, dtype=torch.bfloat16)
    k = torch.randn(16, spec.get("heads_kv", 2), spec.get("k_head_dim", 64), dtype=torch.bfloat16)
    v = torch.randn_like(k)
    cu_seqlens = torch.tensor(spec.get("cu_seqlens", [0, 8, 16]), dtype=spec.get("cu_dtype", torch.int32))
    settings = dict(causal=spec.get("causal", True), window=spec.get("window"), softmax_scale=spec.get("softmax_scale"))
    for attention in (flash_attention_varlen, attention_reference):
        with pytest.raises(ValueError, match=message):
            attention(q, k, v, cu_seqlens, spec.get("max_seqlen", 8), **settings)


@pytest.mark.skipif(ON_GPU, reason="checks the CPU guard")
def test_cpu_tensors_need_the_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    q, k, v, cu_seqlens = make_inputs(Case((0, 8), 2, 1, 64, torch.bfloat16))
    with pytest.raises(ValueError, match="attention_reference"):
        flash_attention_varlen(q, k, v, cu_seqlens, 8)
