"""The fused Mamba2 mixer core against the unfused reference composition (conv1d, SSD scan, gated RMSNorm):
the normed output and the gradients of zxbcdt (dz included), the conv weight and bias, dt_bias, A_log, D and the
norm weight, over packed documents with ragged boundaries (length-1 documents, documents starting mid-chunk, one
document spanning the row)."""

from dataclasses import dataclass
from itertools import pairwise

import pytest
import torch

from gristmill.kernels.ssd import mamba_mixer_core, mamba_mixer_core_reference
from gristmill.kernels.testing import assert_close

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
EPS = 1e-5
ON_GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
ON_CPU = pytest.mark.skipif(torch.cuda.is_available(), reason="tiny shapes are for the CPU interpreter")


@dataclass(frozen=True)
class Case:
    doc_lens: tuple[int, ...] | None
    """None: no cu_seqlens, the row is one document."""
    heads: int
    head_dim: int
    groups: int
    d_state: int
    chunk_size: int
    dtype: torch.dtype
    tol: float

    @property
    def tokens(self) -> int:
        return sum(self.doc_lens) if self.doc_lens else 50


F32 = (torch.float32, 1e-4)
BF16 = (torch.bfloat16, 2e-2)  # the interpreter cannot run the scan in bf16: GPU only
CASES = [
    pytest.param(Case((1, 19, 1, 24), 2, 16, 1, 16, 16, *F32), id="f32-len1-T45-H2-L16", marks=ON_CPU),
    pytest.param(Case((45,), 4, 16, 2, 16, 16, *F32), id="f32-one-doc-T45-H4-G2", marks=ON_CPU),
    pytest.param(Case((7, 1, 33, 0, 12), 4, 16, 2, 32, 32, *F32), id="f32-midchunk-empty-T53-N32", marks=ON_CPU),
    pytest.param(Case(None, 2, 16, 2, 16, 32, *F32), id="f32-no-cu-T50", marks=ON_CPU),
    pytest.param(Case((1, 300, 1, 700, 0, 23), 32, 64, 1, 128, 256, *BF16), id="bf16-ragged-T1025-H32", marks=ON_GPU),
    pytest.param(Case((1500,), 16, 64, 2, 64, 128, *BF16), id="bf16-one-doc-T1500-G2-L128", marks=ON_GPU),
]


def make_inputs(case: Case) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """Random in_proj output in the case's dtype and the mixer's fp32 parameters (in the positional order of
    mamba_mixer_core), plus cu_seqlens."""
    H, P, G, N = case.heads, case.head_dim, case.groups, case.d_state
    d_inner, conv_dim = H * P, H * P + 2 * G * N
    cu = None
    if case.doc_lens is not None:
        offsets = [0, *torch.tensor(case.doc_lens).cumsum(0).tolist()]
        cu = torch.tensor(offsets, dtype=torch.int32, device=DEVICE)
    leaves = {
        "zxbcdt": torch.randn(case.tokens, d_inner + conv_dim + H, device=DEVICE).to(case.dtype),
        "conv_weight": torch.randn(conv_dim, 4, device=DEVICE) / 2,
        "conv_bias": torch.randn(conv_dim, device=DEVICE) / 2,
        "dt_bias": torch.randn(H, device=DEVICE) - 2.0,
        "A_log": torch.rand(H, device=DEVICE) * 2.0,
        "D": torch.randn(H, device=DEVICE),
        "norm_weight": 1.0 + 0.1 * torch.randn(d_inner, device=DEVICE),
    }
    return leaves, cu


def run_mixer(fn, leaves: dict, cu: torch.Tensor | None, case: Case, upcast: bool, dnormed: torch.Tensor):
    """Output and the gradients of <normed, dnormed> w.r.t. every leaf."""
    args = {k: (v.float() if upcast else v).detach().requires_grad_() for k, v in leaves.items()}
    normed = fn(*args.values(), EPS, groups=case.groups, chunk_size=case.chunk_size, cu_seqlens=cu)
    grads = torch.autograd.grad((normed.float() * dnormed).sum(), list(args.values()))
    return normed, dict(zip(args, grads))


@pytest.mark.parametrize("case", CASES)
def test_mamba_mixer_core(case: Case) -> None:
    torch.manual_seed(0)
    leaves, cu = make_inputs(case)
    dnormed = torch.randn(case.tokens, case.heads * case.head_dim, device=DEVICE)
    normed, grads = run_mixer(mamba_mixer_core, leaves, cu, case, False, dnormed)
    normed_ref, grads_ref = run_mixer(mamba_mixer_core_reference, leaves, cu, case, True, dnormed)
    assert normed.dtype == case.dtype
    assert_close("normed", normed, normed_ref, case.tol)
    for name, grad in grads.items():
        assert grad.dtype == leaves[name].dtype, name
        assert_close("d" + name, grad, grads_ref[name], case.tol)


@pytest.mark.parametrize("case", CASES[:1])
def test_mamba_mixer_core_restarts_at_each_document(case: Case) -> None:
    """A packed row gives each document what it gets alone: no conv tap and no state crosses a boundary."""
    torch.manual_seed(1)
    leaves, cu = make_inputs(case)
    params = [leaves[k] for k in ("conv_weight", "conv_bias", "dt_bias", "A_log", "D", "norm_weight")] + [EPS]
    kw = {"groups": case.groups, "chunk_size": case.chunk_size}
    packed = mamba_mixer_core(leaves["zxbcdt"], *params, cu_seqlens=cu, **kw)
    for begin, end in pairwise(cu.tolist()):
        alone = mamba_mixer_core(leaves["zxbcdt"][begin:end], *params, **kw)
        assert_close(f"tokens {begin}:{end}", packed[begin:end], alone, 1e-5)


def _valid_args() -> dict:
    T, H, P, G, N = 8, 2, 16, 1, 16
    conv_dim = H * P + 2 * G * N
    return {
        "zxbcdt": torch.randn(T, H * P + conv_dim + H, device=DEVICE),
        "conv_weight": torch.randn(conv_dim, 4, device=DEVICE),
        "conv_bias": torch.randn(conv_dim, device=DEVICE),
        "dt_bias": torch.randn(H, device=DEVICE),
        "A_log": torch.randn(H, device=DEVICE),
        "D": torch.randn(H, device=DEVICE),
        "norm_weight": torch.randn(H * P, device=DEVICE),
        "eps": EPS,
        "groups": G,
        "chunk_size": 16,
    }


@pytest.mark.parametrize(
    "change, message",
    [
        ({"zxbcdt": torch.randn(8, 91)}, "d_inner 25"),
        ({"zxbcdt": torch.randn(8, 60)}, "zxbcdt width"),
        ({"zxbcdt": torch.randn(8, 132)}, "B and C"),
        ({"groups": 3}, "groups"),
        ({"conv_bias": torch.randn(5)}, "bias"),
        ({"A_log": torch.randn(3)}, "A"),
        ({"chunk_size": 24}, "chunk_size"),
        ({"cu_seqlens": torch.tensor([0, 3, 7], dtype=torch.int32)}, "cu_seqlens"),
        ({"norm_weight": torch.randn(31)}, "norm_weight"),
        ({"eps": 0.0}, "eps"),
    ],
    ids=[
        "d-inner-not-heads-multiple", "zxbcdt-too-narrow", "no-state-columns", "groups", "conv-bias", "A-log",
        "chunk-size", "cu-end", "norm-weight", "eps",
    ],
)
@pytest.mark.parametrize("fn", [mamba_mixer_core, mamba_mixer_core_reference], ids=["fused", "reference"])
def test_mamba_mixer_core_rejects_bad_arguments(fn, change: dict, message: str) -> None:
    args = _valid_args()
    args.update({k: v.to(DEVICE) if isinstance(v, torch.Tensor) else v for k, v in change.items()})
    names = ("zxbcdt", "conv_weight", "conv_bias", "dt_bias", "A_log", "D", "norm_weight", "eps")
    positional = [args.pop(k) for k in names]
    with pytest.raises(ValueError, match=message):
        fn(*positional, **args)
