"""The column-scaled weight (a norm's weight folded into the next projection) against float64: the folded weight
and both gradients, with row and column counts that leave the kernel's blocks partly masked."""

import pytest
import torch

from gristmill.kernels.fused.column_scale import BLOCK_COLS, BLOCK_ROWS, column_scale, column_scale_reference

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
ON_GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize(
    "shape, weight_dtype, dtype",
    [
        pytest.param((BLOCK_ROWS + 5, BLOCK_COLS + 44), torch.float32, torch.bfloat16, id="f32-to-bf16-ragged"),
        pytest.param((7, 48), torch.float32, torch.float32, id="f32-small"),
        pytest.param((BLOCK_ROWS, 2 * BLOCK_COLS), torch.bfloat16, torch.bfloat16, id="bf16-whole-blocks"),
        pytest.param((1536, 1024), torch.float32, torch.bfloat16, id="f32-to-bf16-qkv", marks=ON_GPU),
    ],
)
def test_matches_float64(shape: tuple[int, int], weight_dtype: torch.dtype, dtype: torch.dtype) -> None:
    weight = torch.randn(shape, device=DEVICE).to(weight_dtype).requires_grad_()
    scale = (1 + 0.3 * torch.randn(shape[1], device=DEVICE)).requires_grad_()
    grad = torch.randn(shape, device=DEVICE).to(dtype)
    folded = column_scale(weight, scale, dtype)
    folded.backward(grad)
    assert folded.dtype == dtype and weight.grad.dtype == weight_dtype and scale.grad.dtype == scale.dtype
    torch.testing.assert_close(folded, column_scale_reference(weight, scale, dtype), rtol=0, atol=0)

    weight64, scale64 = (t.detach().double().requires_grad_() for t in (weight, scale))
    (weight64 * scale64).backward(grad.double())
    tol = 1e-2 if weight_dtype == torch.bfloat16 else 1e-5
    torch.testing.assert_close(weight.grad.double(), weight64.grad, rtol=tol, atol=tol)
    torch.testing.assert_close(scale.grad.double(), scale64.grad, rtol=tol, atol=tol * shape[0] ** 0.5)


def test_rejects_a_scale_that_does_not_match_the_columns() -> None:
    with pytest.raises(ValueError, match="column scale"):
        column_scale(torch.randn(4, 6), torch.randn(4), torch.float32)
