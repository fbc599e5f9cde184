"""The Mamba2 block with its input norm folded into quack's GEMMs against the composition of the references (the
norm, in_proj, the mixer core, out_proj and the residual add, in float32): output, the weighted stream and rstd it
hands the next block, and every gradient, over packed documents (GPU with quack-kernels installed); and when it
declines (CPU)."""

import pytest
import torch
import torch.nn.functional as F

from gristmill.kernels.fused import rms_norm_reference
from gristmill.kernels.fused.normed_stream import NormedStream
from gristmill.kernels.ssd import mamba_mixer_core_reference
from gristmill.kernels.ssd.mixer import CoreParameters
from gristmill.kernels.ssd.quack_mamba_block import normed_mamba_block, normed_mamba_block_unavailable_reason
from gristmill.kernels.testing import assert_close

EPS = 1e-5
HEADS, HEAD_DIM, GROUPS, D_STATE, CHUNK = 8, 64, 1, 64, 64


def _quack_ready() -> bool:
    if not torch.cuda.is_available():
        return False
    stream, w_in, w_out = (torch.empty(s, device="cuda", dtype=torch.bfloat16) for s in ((8, 64), (128, 64), (64, 32)))
    return normed_mamba_block_unavailable_reason(stream, w_in, w_out) is None


ON_QUACK = pytest.mark.skipif(not _quack_ready(), reason="needs a Hopper GPU with quack-kernels installed")


def test_declines_cpu_and_shapes_it_cannot_run() -> None:
    stream, w_in, w_out = torch.randn(4, 64), torch.randn(128, 64), torch.randn(64, 32)
    assert "CUDA" in normed_mamba_block_unavailable_reason(stream, w_in, w_out)
    assert "[n, d] weight" in normed_mamba_block_unavailable_reason(stream, w_in[:, :32], w_out)
    assert "back to the stream" in normed_mamba_block_unavailable_reason(stream, w_in, w_out[:32])
    assert "multiples of 8" in normed_mamba_block_unavailable_reason(stream, w_in[:100], w_out)


def _inputs(tokens: int, width: int, weight_dtype: torch.dtype) -> dict[str, torch.Tensor]:
    d_inner = HEADS * HEAD_DIM
    conv_dim = d_inner + 2 * GROUPS * D_STATE
    projected = d_inner + conv_dim + HEADS
    return {
        "stream": torch.randn(tokens, width, device="cuda").bfloat16(),
        "norm_weight": 1 + 0.1 * torch.randn(width, device="cuda"),
        "w_in": (torch.randn(projected, width, device="cuda") / width**0.5).to(weight_dtype),
        "conv_weight": torch.randn(conv_dim, 4, device="cuda") / 2,
        "conv_bias": torch.randn(conv_dim, device="cuda") / 2,
        "dt_bias": torch.randn(HEADS, device="cuda") - 2.0,
        "A_log": torch.rand(HEADS, device="cuda") * 2.0,
        "D": torch.randn(HEADS, device="cuda"),
        "gated_weight": 1 + 0.1 * torch.randn(d_inner, device="cuda"),
        "w_out": (torch.randn(width, d_inner, device="cuda") / d_inner**0.5).to(weight_dtype),
    }


def _reference(cu: torch.Tensor, stream, norm_weight, w_in, *rest) -> torch.Tensor:
    *core, w_out = rest
    zxbcdt = F.linear(rms_norm_reference(stream, norm_weight, EPS), w_in)
    core_out = mamba_mixer_core_reference(zxbcdt, *core, EPS, groups=GROUPS, chunk_size=CHUNK, cu_seqlens=cu)
    return stream + F.linear(core_out, w_out)


@ON_QUACK
@pytest.mark.parametrize("doc_lens, width", [((1, 700, 3, 0, 1500, 844), 256), ((1000,), 128)],
                         ids=["ragged-T3048-d256", "one-doc-T1000-d128"])
@pytest.mark.parametrize("entry", ["plain", "normed"])
@pytest.mark.parametrize("autocast", [False, True], ids=["bf16", "autocast-fp32-weights"])
def test_matches_reference(doc_lens: tuple[int, ...], width: int, entry: str, autocast: bool) -> None:
    """With a plain stream the block norms it itself; with a `NormedStream` it takes the weighted copy and rstd as
    given and hands its output on as one for a next norm."""
    torch.manual_seed(int(torch.randint(0, 2**31, ())))
    tokens = sum(doc_lens)
    cu = torch.tensor([0, *torch.tensor(doc_lens).cumsum(0).tolist()], dtype=torch.int32, device="cuda")
    inputs = _inputs(tokens, width, torch.float32 if autocast else torch.bfloat16)
    next_weight = 1 + 0.1 * torch.randn(width, device="cuda")
    leaves = {name: t.clone().requires_grad_() for name, t in inputs.items()}
    stream, norm_weight, w_in, *core, w_out = leaves.values()
    if entry == "normed":
        rstd = torch.rsqrt(stream.detach().float().square().mean(-1) + EPS)
        stream = NormedStream(stream, (stream.detach().float() * norm_weight.detach()).bfloat16(), rstd, norm_weight,
                              EPS)
    next_norm = (next_weight, EPS) if entry == "normed" else None
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        out = normed_mamba_block(stream, norm_weight, EPS, w_in, CoreParameters(*core), EPS, w_out, groups=GROUPS,
                                 chunk_size=CHUNK, cu_seqlens=cu, next_norm=next_norm)
    refs = {name: t.float().requires_grad_() for name, t in inputs.items()}
    y_ref = _reference(cu, *refs.values())
    y = out.stream if entry == "normed" else out
    assert_close("y", y, y_ref, 2e-2)
    if entry == "normed":
        assert_close("weighted", out.weighted, y_ref.detach() * next_weight, 2e-2)
        assert_close("rstd", out.rstd, torch.rsqrt(y_ref.detach().square().mean(-1) + EPS), 2e-2)
    dy = torch.randn(tokens, width, device="cuda").bfloat16()
    grads = torch.autograd.grad(y, list(leaves.values()), dy)
    ref_grads = torch.autograd.grad(y_ref, list(refs.values()), dy.float())
    for name, grad, ref in zip(leaves, grads, ref_grads):
        assert grad.dtype == leaves[name].dtype, f"d{name} dtype {grad.dtype}"
        assert_close("d" + name, grad, ref, 3e-2)


@ON_QUACK
def test_a_normed_stream_of_another_norm_is_the_callers_error() -> None:
    inputs = _inputs(64, 128, torch.bfloat16)
    stream, norm_weight = inputs["stream"], inputs["norm_weight"]
    other = NormedStream(stream, stream, torch.ones(64, device="cuda"), norm_weight.clone(), EPS)
    core = CoreParameters(*(inputs[k] for k in ("conv_weight", "conv_bias", "dt_bias", "A_log", "D", "gated_weight")))
    with pytest.raises(ValueError, match="another norm"):
        normed_mamba_block(other, norm_weight, EPS, inputs["w_in"], core, EPS, inputs["w_out"], groups=GROUPS,
                           chunk_size=CHUNK, cu_seqlens=None)
