"""The dispatch between the kernels and the reference ops (trainer/ops.py)."""

import pytest
import torch
import torch.nn.functional as F

from gristmill.kernels.fused import swiglu_halves_reference
from gristmill.kernels.fused.swiglu_mlp import QuackMLPFailed
from gristmill.trainer import ops


def test_the_mlp_goes_on_without_quack_when_quack_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """ops.swiglu_mlp on the kernel path: if quack's MLP raises QuackMLPFailed, the step still gets the stream plus
    the MLP's value, from two matmuls around the SwiGLU kernel."""

    def failing_quack(*args: object) -> torch.Tensor:
        raise QuackMLPFailed("TypeError: no fail-closed semantic key")

    monkeypatch.setattr(ops, "_on_kernel", lambda tensor: True)  # the interpreter runs the SwiGLU kernel on CPU
    monkeypatch.setattr(ops, "swiglu_mlp_unavailable_reason", lambda *tensors: None)
    monkeypatch.setattr(ops, "swiglu_mlp_kernel", failing_quack)
    x, w1, w2, stream = torch.randn(5, 16), torch.randn(48, 16), torch.randn(16, 24), torch.randn(5, 16)
    expected = stream + F.linear(swiglu_halves_reference(F.linear(x, w1)), w2)
    torch.testing.assert_close(ops.swiglu_mlp(x, w1, w2, stream), expected)
