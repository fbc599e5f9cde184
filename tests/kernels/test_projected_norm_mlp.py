"""The attention block's output projection, residual add, MLP norm and MLP on quack's GEMMs against the float64
composition of the references: output and all six gradients (GPU with quack-kernels installed), and when it declines
or fails."""

import pytest
import torch
import torch.nn.functional as F

from gristmill.kernels.fused import rms_norm_reference, swiglu_halves_reference
from gristmill.kernels.fused.swiglu_mlp import (
    QuackMLPFailed, projected_norm_mlp, projected_norm_mlp_unavailable_reason, quack_mlp, swiglu_mlp_unavailable_reason,
)
from gristmill.kernels.testing import assert_close


def _quack_ready() -> bool:
    if not torch.cuda.is_available():
        return False
    core, wo, stream, w1, w2 = (
        torch.empty(shape, device="cuda", dtype=torch.bfloat16)
        for shape in ((8, 64), (64, 64), (8, 64), (128, 64), (64, 64))
    )
    return projected_norm_mlp_unavailable_reason(core, wo, stream, w1, w2) is None


ON_QUACK = pytest.mark.skipif(not _quack_ready(), reason="needs a Hopper GPU with quack-kernels installed")
EPS = 1e-5


def _reference(core, w_out, stream, norm_weight, w_gate_up, w_down):
    hidden = stream + F.linear(core, w_out)
    normed = rms_norm_reference(hidden, norm_weight, EPS)
    return hidden + F.linear(swiglu_halves_reference(F.linear(normed, w_gate_up)), w_down)


def test_declines_cpu_and_shapes_that_are_no_projection() -> None:
    core, wo, stream = torch.randn(4, 24), torch.randn(16, 24), torch.randn(4, 16)
    w1, w2 = torch.randn(64, 16), torch.randn(16, 32)
    assert "CUDA" in projected_norm_mlp_unavailable_reason(core, wo, stream, w1, w2)
    assert "projection" in projected_norm_mlp_unavailable_reason(core, wo[:, :20], stream, w1, w2)
    assert "multiple of 8" in projected_norm_mlp_unavailable_reason(core[:, :20], wo[:, :20], stream, w1, w2)


@pytest.mark.usefixtures("broken_quack_mlp")
def test_a_failure_inside_quack_switches_both_mlp_paths_off() -> None:
    """One failure record for both MLP ops: after quack raised in one, the other declines too."""
    core, wo, stream = torch.randn(4, 24), torch.randn(16, 24), torch.randn(4, 16)
    w1, w2 = torch.randn(64, 16), torch.randn(16, 32)
    with pytest.raises(QuackMLPFailed, match="TypeError: epilogue fn"):
        projected_norm_mlp(core, wo, stream, torch.ones(16), EPS, w1, w2)
    assert "quack failed earlier in this run: TypeError" in swiglu_mlp_unavailable_reason(stream, w1, w2)
    assert "quack failed earlier in this run" in projected_norm_mlp_unavailable_reason(core, wo, stream, w1, w2)


@pytest.mark.usefixtures("unreachable_quack_mlp")
def test_mixed_dtypes_are_the_callers_error_and_keep_quack_on() -> None:
    """A float32 stream beside bf16 operands outside autocast is a ValueError that leaves quack on."""
    core, wo, w1, w2 = (torch.randn(shape).bfloat16() for shape in ((4, 24), (16, 24), (64, 16), (16, 32)))
    with pytest.raises(ValueError, match="one dtype"):
        projected_norm_mlp(core, wo, torch.randn(4, 16), torch.ones(16), EPS, w1, w2)
    assert quack_mlp._failures.reason is None


@ON_QUACK
@pytest.mark.parametrize("tokens, core_width, width, hidden", [(4096, 1024, 1024, 2752), (1000, 512, 256, 512),
                                                               (37, 128, 128, 384)])
@pytest.mark.parametrize("autocast", [False, True], ids=["bf16", "autocast-fp32-weights"])
def test_matches_reference(tokens: int, core_width: int, width: int, hidden: int, autocast: bool) -> None:
    torch.manual_seed(int(torch.randint(0, 2**31, ())))
    weight_dtype = torch.float32 if autocast else torch.bfloat16
    core = torch.randn(tokens, core_width, device="cuda").bfloat16()
    w_out = (torch.randn(width, core_width, device="cuda") / core_width**0.5).to(weight_dtype)
    stream = torch.randn(tokens, width, device="cuda").bfloat16()
    norm_weight = 1 + 0.1 * torch.randn(width, device="cuda")
    w1 = (torch.randn(2 * hidden, width, device="cuda") / width**0.5).to(weight_dtype)
    w2 = (torch.randn(width, hidden, device="cuda") / hidden**0.5).to(weight_dtype)
    dy = torch.randn(tokens, width, device="cuda").bfloat16()
    inputs = (core, w_out, stream, norm_weight, w1, w2)
    leaves = [t.clone().requires_grad_() for t in inputs]
    refs = [t.double().requires_grad_() for t in inputs]
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        y, no_rstd = projected_norm_mlp(*leaves[:4], EPS, *leaves[4:])
        y_again, rstd = projected_norm_mlp(*leaves[:4], EPS, *leaves[4:], next_norm_eps=1e-6)
    y_ref = _reference(*refs)
    assert_close("y", y, y_ref, 2e-2)
    assert no_rstd is None
    assert_close("y beside rstd", y_again, y_ref, 2e-2)
    assert_close("rstd for the next norm", rstd, torch.rsqrt(y_ref.square().mean(-1) + 1e-6), 1e-2)
    grads = torch.autograd.grad(y, leaves, dy)
    ref_grads = torch.autograd.grad(y_ref, refs, dy.double())
    names = ["dcore", "dw_out", "dstream", "dnorm_weight", "dw_gate_up", "dw_down"]
    for name, grad, ref, leaf in zip(names, grads, ref_grads, leaves):
        assert grad.dtype == leaf.dtype, f"{name} dtype {grad.dtype} != {leaf.dtype}"
        assert_close(name, grad, ref, 2e-2)
