"""A weight gradient in the weight's dtype straight from the GEMM: float32 from bf16 operands (cuBLAS stores it
on a GPU, a cast after elsewhere), and the operands' own dtype untouched."""

import pytest
import torch

from gristmill.kernels.fused import weight_gradient as module
from gristmill.kernels.fused.weight_gradient import weight_gradient

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("rows, tokens, cols", [(48, 1000, 32), (8, 37, 24)])
def test_float32_gradient_of_bf16_operands(device: str, rows: int, tokens: int, cols: int) -> None:
    grad = torch.randn(tokens, rows, device=device).bfloat16()
    inputs = torch.randn(tokens, cols, device=device).bfloat16()
    out = weight_gradient(grad.T, inputs, torch.float32)
    assert out.dtype == torch.float32 and out.shape == (rows, cols)
    exact = grad.T.double() @ inputs.double()
    # stored in float32 by cuBLAS: no bf16 rounding of the result (half a bf16 step, 2^-9 relative); cast after the
    # bf16 matmul elsewhere: that rounding
    stored = device == "cuda" and module._mm_stores_dtype()
    rounding = 2**-12 if stored else 2**-8
    assert ((out.double() - exact).abs() <= rounding * exact.abs() + 1e-4 * tokens**0.5).all()


@pytest.mark.parametrize("device", DEVICES)
def test_same_dtype_is_a_plain_matmul(device: str) -> None:
    grad, inputs = torch.randn(64, 16, device=device).bfloat16(), torch.randn(64, 8, device=device).bfloat16()
    out = weight_gradient(grad.T, inputs, torch.bfloat16)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, grad.T @ inputs, rtol=0, atol=0)
