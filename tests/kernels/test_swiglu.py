"""Fused SwiGLU against its float64 reference: output and both gradients."""

import pytest
import torch

from gristmill.kernels.fused import swiglu, swiglu_reference
from gristmill.kernels.testing import assert_close

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
ON_GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CASES = [
    pytest.param(torch.float32, (7, 333), 1e-5, id="f32-T7-F333"),
    pytest.param(torch.float32, (1,), 1e-5, id="f32-N1"),
    pytest.param(torch.bfloat16, (4, 1000, 3584), 1e-2, id="bf16-B4-T1000-F3584", marks=ON_GPU),
]


@pytest.mark.parametrize("dtype, shape, tol", CASES)
def test_swiglu(dtype: torch.dtype, shape: tuple[int, ...], tol: float) -> None:
    torch.manual_seed(0)
    gate = (3 * torch.randn(shape, device=DEVICE)).to(dtype)
    up, dy = torch.randn_like(gate), torch.randn_like(gate)
    gate_leaf, up_leaf = gate.clone().requires_grad_(), up.clone().requires_grad_()
    gate_ref, up_ref = gate.double().requires_grad_(), up.double().requires_grad_()

    y = swiglu(gate_leaf, up_leaf)
    y_ref = swiglu_reference(gate_ref, up_ref)
    assert_close("y", y, y_ref, tol)
    grads = torch.autograd.grad(y, (gate_leaf, up_leaf), dy)
    ref_grads = torch.autograd.grad(y_ref, (gate_ref, up_ref), dy.double())
    for name, grad, ref in zip(["dgate", "dup"], grads, ref_grads):
        assert_close(name, grad, ref, tol)


def test_swiglu_rejects_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="gate"):
        swiglu(torch.randn(2, 8, device=DEVICE), torch.randn(2, 7, device=DEVICE))
