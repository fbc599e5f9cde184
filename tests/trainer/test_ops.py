"""The dispatch between the kernels and the reference ops (trainer/ops.py)."""

import pytest
import torch
import torch.nn.functional as F

from gristmill.kernels.fused import swiglu_halves_reference
from gristmill.kernels.fused.linear_cross_entropy.quack_lce import QuackLossFailed
from gristmill.kernels.fused.swiglu_mlp import QuackMLPFailed
from gristmill.kernels.interpreter import interpreting
from gristmill.trainer import ops

# these run the Triton kernels on CPU tensors: on a GPU machine the interpreter is off and they would fail there
pytestmark = pytest.mark.skipif(not interpreting(), reason="runs Triton on CPU tensors: needs TRITON_INTERPRET=1")


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


def _loss_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return torch.randn(6, 16), torch.randn(40, 16), torch.tensor([1, 5, -100, 39, 0, 7])


def test_the_loss_goes_on_without_quack_when_quack_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """ops.linear_cross_entropy on the kernel path: if quack's loss raises QuackLossFailed, the step still gets the
    summed loss, from our chunked kernel."""

    def failing_quack(*args: object, **kwargs: object) -> torch.Tensor:
        raise QuackLossFailed("TypeError: no fail-closed semantic key")

    monkeypatch.setattr(ops, "_on_kernel", lambda tensor: True)  # the interpreter runs our kernel on CPU
    monkeypatch.setattr(ops, "quack_linear_cross_entropy_unavailable_reason", lambda *tensors, **options: None)
    monkeypatch.setattr(ops, "quack_linear_cross_entropy", failing_quack)
    hidden, weight, labels = _loss_inputs()
    expected = F.cross_entropy(hidden @ weight.T, labels, ignore_index=-100, reduction="sum")
    loss = ops.linear_cross_entropy(hidden, weight, labels, ignore_index=-100, z_loss=0.0)
    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize("quack_loss", [True, False])
def test_the_loss_takes_quack_only_where_enabled(monkeypatch: pytest.MonkeyPatch, quack_loss: bool) -> None:
    calls = []

    def quack(*args: object, **kwargs: object) -> torch.Tensor:
        calls.append("quack")
        return torch.zeros(())

    monkeypatch.setattr(ops, "_on_kernel", lambda tensor: True)
    monkeypatch.setattr(ops, "quack_linear_cross_entropy_unavailable_reason", lambda *tensors, **options: None)
    monkeypatch.setattr(ops, "quack_linear_cross_entropy", quack)
    ops.enable_kernels(True, quack_loss=quack_loss)
    try:
        ops.linear_cross_entropy(*_loss_inputs(), ignore_index=-100, z_loss=0.0)
    finally:
        ops.enable_kernels(True)
    assert calls == (["quack"] if quack_loss else [])
