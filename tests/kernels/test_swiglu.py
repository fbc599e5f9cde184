"""Fused SwiGLU against its float64 reference: output and both gradients, for separate, strided and
halves-of-one-tensor inputs."""

import pytest
import torch

from gristmill.kernels.fused import swiglu, swiglu_halves, swiglu_halves_reference, swiglu_reference
from gristmill.kernels.testing import assert_close

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
ON_GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CASES = [
    pytest.param(torch.float32, (7, 333), 1e-5, id="f32-T7-F333"),
    pytest.param(torch.float32, (1,), 1e-5, id="f32-N1"),
    pytest.param(torch.float32, (2, 3, 1500), 1e-5, id="f32-B2-T3-F1500"),
    pytest.param(torch.bfloat16, (4, 1000, 3584), 1e-2, id="bf16-B4-T1000-F3584", marks=ON_GPU),
]


def _random(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    return (3 * torch.randn(shape, device=DEVICE)).to(dtype)


@pytest.mark.parametrize("dtype, shape, tol", CASES)
def test_swiglu(dtype: torch.dtype, shape: tuple[int, ...], tol: float) -> None:
    torch.manual_seed(int(torch.randint(0, 2**31, ())))
    gate = _random(shape, dtype)
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


@pytest.mark.parametrize("dtype, shape, tol", CASES[:1] + CASES[2:])
def test_swiglu_halves(dtype: torch.dtype, shape: tuple[int, ...], tol: float) -> None:
    """One [.., 2F] input: gate and up are read as strided halves, the gradient comes back as one tensor."""
    torch.manual_seed(int(torch.randint(0, 2**31, ())))
    gate_up = _random((*shape[:-1], 2 * shape[-1]), dtype)
    leaf, ref_leaf = gate_up.clone().requires_grad_(), gate_up.double().requires_grad_()
    dy = torch.randn(shape, device=DEVICE, dtype=dtype)

    y = swiglu_halves(leaf)
    y_ref = swiglu_halves_reference(ref_leaf)
    assert y.shape == shape
    assert_close("y", y, y_ref, tol)
    (grad,) = torch.autograd.grad(y, leaf, dy)
    (grad_ref,) = torch.autograd.grad(y_ref, ref_leaf, dy.double())
    assert_close("dgate_up", grad, grad_ref, tol)


def test_swiglu_reads_column_slices_in_place() -> None:
    """gate as a column slice of a wider projection (the Mamba2 gate): same values and gradients as copies."""
    torch.manual_seed(int(torch.randint(0, 2**31, ())))
    wide = torch.randn(9, 40, device=DEVICE, requires_grad=True)
    up = torch.randn(9, 24, device=DEVICE, requires_grad=True)
    dy = torch.randn(9, 24, device=DEVICE)
    y = swiglu(wide[:, 5:29], up)
    y_ref = swiglu_reference(wide[:, 5:29].double(), up.double())
    assert_close("y", y, y_ref, 1e-5)
    grads = torch.autograd.grad(y, (wide, up), dy)
    ref_grads = torch.autograd.grad(y_ref, (wide, up), dy.double())
    for name, grad, ref in zip(["dwide", "dup"], grads, ref_grads):
        assert_close(name, grad, ref, 1e-5)


def test_swiglu_rejects_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="gate"):
        swiglu(torch.randn(2, 8, device=DEVICE), torch.randn(2, 7, device=DEVICE))


def test_swiglu_halves_rejects_odd_width() -> None:
    with pytest.raises(ValueError, match="even"):
        swiglu_halves(torch.randn(2, 7, device=DEVICE))
