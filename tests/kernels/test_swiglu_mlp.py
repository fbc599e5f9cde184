"""The SwiGLU MLP on quack's GEMMs, added into the residual stream, against two matmuls around the SwiGLU reference:
output and all four gradients (GPU with quack-kernels installed), the interleaved weight layout it reads, and when
it declines to run."""

import pytest
import torch
import torch.nn.functional as F

from gristmill.kernels.fused import swiglu_halves_reference
from gristmill.kernels.fused.swiglu_mlp import (
    QuackMLPFailed, interleave_gate_up, quack_mlp, swiglu_mlp, swiglu_mlp_unavailable_reason,
)
from gristmill.kernels.fused.swiglu_mlp.interleave import interleave_rows_reference
from gristmill.kernels.testing import assert_close


def _quack_ready() -> bool:
    if not torch.cuda.is_available():
        return False
    x, w1, w2 = (torch.empty(shape, device="cuda", dtype=torch.bfloat16) for shape in ((8, 64), (128, 64), (64, 64)))
    return swiglu_mlp_unavailable_reason(x, w1, w2) is None


ON_QUACK = pytest.mark.skipif(not _quack_ready(), reason="needs a Hopper GPU with quack-kernels installed")


def _reference(x: torch.Tensor, w_gate_up: torch.Tensor, w_down: torch.Tensor, stream: torch.Tensor) -> torch.Tensor:
    return stream + F.linear(swiglu_halves_reference(F.linear(x, w_gate_up)), w_down)


def test_interleaved_rows_pair_each_gate_with_its_up() -> None:
    hidden, width = 6, 4
    w = torch.randn(2 * hidden, width)
    x = torch.randn(5, width)
    pairs = F.linear(x, interleave_gate_up(w))
    torch.testing.assert_close(F.silu(pairs[:, 0::2]) * pairs[:, 1::2], swiglu_halves_reference(F.linear(x, w)))


@pytest.mark.parametrize("hidden, width", [(6, 4), (37, 300), (40, 256), (1, 1)])
def test_interleaving_copy_casts_and_its_gradient_comes_back_in_the_weight_layout(hidden: int, width: int) -> None:
    """One pass casts and interleaves (the Triton kernel on CUDA and in the CPU interpreter, ragged row and column
    blocks included); the gradient of the interleaved bf16 copy returns de-interleaved in float32."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    w = torch.randn(2 * hidden, width, device=device, requires_grad=True)
    interleaved = interleave_gate_up(w, torch.bfloat16)
    assert interleaved.dtype == torch.bfloat16
    expected = torch.stack([w[:hidden], w[hidden:]], dim=1).reshape(2 * hidden, width).detach()
    # exact on a GPU; Triton's CPU interpreter truncates float32 to bf16 (one bf16 step, 2^-7, off torch's rounding)
    rounding = 0 if torch.cuda.is_available() else 2**-7
    torch.testing.assert_close(interleaved.float(), expected.bfloat16().float(), rtol=rounding, atol=0)
    torch.testing.assert_close(interleaved.float(), interleave_rows_reference(w.detach(), torch.bfloat16, True).float(),
                               rtol=rounding, atol=0)
    grad = torch.randn(2 * hidden, width, device=device).bfloat16()
    interleaved.backward(grad)
    assert w.grad.dtype == torch.float32
    torch.testing.assert_close(w.grad, torch.cat([grad[0::2], grad[1::2]]).float(), rtol=0, atol=0)


def test_interleaving_rejects_an_odd_row_count() -> None:
    with pytest.raises(ValueError, match="gate/up"):
        interleave_gate_up(torch.randn(5, 4))


def test_declines_cpu_and_odd_shapes() -> None:
    x, w1, w2 = torch.randn(4, 16), torch.randn(32, 16), torch.randn(16, 16)
    assert "CUDA" in swiglu_mlp_unavailable_reason(x, w1, w2)
    if torch.cuda.is_available():
        cuda = [t.cuda().bfloat16() for t in (x, w1[:30], w2)]
        assert swiglu_mlp_unavailable_reason(*cuda) is not None


@ON_QUACK
@pytest.mark.parametrize("tokens, width, hidden", [(4096, 1024, 2816), (1000, 256, 512), (37, 128, 384)])
@pytest.mark.parametrize("autocast", [False, True], ids=["bf16", "autocast-fp32-weights"])
def test_matches_reference(tokens: int, width: int, hidden: int, autocast: bool) -> None:
    torch.manual_seed(int(torch.randint(0, 2**31, ())))
    weight_dtype = torch.float32 if autocast else torch.bfloat16
    x = torch.randn(tokens, width, device="cuda").bfloat16()
    w1 = (torch.randn(2 * hidden, width, device="cuda") / width**0.5).to(weight_dtype)
    w2 = (torch.randn(width, hidden, device="cuda") / hidden**0.5).to(weight_dtype)
    stream = torch.randn(tokens, width, device="cuda").bfloat16()
    dy = torch.randn(tokens, width, device="cuda").bfloat16()
    leaves = [t.clone().requires_grad_() for t in (x, w1, w2, stream)]
    refs = [t.double().requires_grad_() for t in (x, w1, w2, stream)]
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        y = swiglu_mlp(*leaves)
    y_ref = _reference(*refs)
    assert_close("y", y, y_ref, 2e-2)
    grads = torch.autograd.grad(y, leaves, dy)
    ref_grads = torch.autograd.grad(y_ref, refs, dy.double())
    for name, grad, ref, leaf in zip(["dx", "dw_gate_up", "dw_down", "dstream"], grads, ref_grads, leaves):
        assert grad.dtype == leaf.dtype, f"{name} dtype {grad.dtype} != {leaf.dtype}"
        assert_close(name, grad, ref, 2e-2)


@ON_QUACK
@pytest.mark.parametrize("tokens, width, hidden", [(4096, 1024, 2752), (300, 256, 512)])
def test_gradient_epilogue_matches_quacks_dgated(tokens: int, width: int, hidden: int) -> None:
    """Ours leaves out quack's activation store and nothing else: d(gate, up) as quack's `gemm_dgated` writes it."""
    from quack.gemm_interface import gemm_dgated

    from gristmill.kernels.fused.swiglu_mlp.quack_epilogue import swiglu_grad_epilogue

    torch.manual_seed(int(torch.randint(0, 2**31, ())))
    dout = torch.randn(tokens, width, device="cuda").bfloat16()
    w_down = (torch.randn(width, hidden, device="cuda") / hidden**0.5).bfloat16()
    preact = (2 * torch.randn(tokens, 2 * hidden, device="cuda")).bfloat16()
    ours = torch.empty_like(preact)
    swiglu_grad_epilogue(dout, w_down, preact, out={"D": ours}, dynamic_scheduler=True)
    theirs, _ = gemm_dgated(dout, w_down, preact, activation="swiglu", dynamic_scheduler=True)
    assert_close("d(gate, up)", ours, theirs.double(), 1e-3)


@pytest.mark.usefixtures("broken_quack_mlp")
def test_a_failure_inside_quack_is_reported_and_remembered() -> None:
    """A broken quack install raises in its first compile: the op names the error once and says so from then on."""
    x, w1, w2 = torch.randn(4, 16), torch.randn(32, 16), torch.randn(16, 16)
    with pytest.raises(QuackMLPFailed, match="TypeError: epilogue fn"):
        swiglu_mlp(x, w1, w2, torch.randn(4, 16))
    assert "quack failed earlier in this run: TypeError" in swiglu_mlp_unavailable_reason(x, w1, w2)


@pytest.mark.usefixtures("unreachable_quack_mlp")
def test_mixed_dtypes_are_the_callers_error_and_keep_quack_on() -> None:
    """Outside autocast a float32 stream beside bf16 activations is a clear ValueError, not a quack failure that
    would switch quack off for the rest of the run."""
    x, w1, w2 = torch.randn(4, 16).bfloat16(), torch.randn(32, 16).bfloat16(), torch.randn(16, 16).bfloat16()
    with pytest.raises(ValueError, match="one dtype"):
        swiglu_mlp(x, w1, w2, torch.randn(4, 16))
    assert quack_mlp._failures.reason is None
