"""A projection on quack's GEMMs, with and without the stream added in its epilogue, against float64 matmuls:
output and all gradients (GPU with quack-kernels installed); and when it declines or fails (CPU)."""

import pytest
import torch

from gristmill.kernels.fused import quack_projection as module
from gristmill.kernels.fused.quack_projection import (
    QuackProjectionFailed, quack_projection, quack_projection_unavailable_reason,
)
from gristmill.kernels.fused.quack_support import FailureRecord
from gristmill.kernels.testing import assert_close


def _quack_ready() -> bool:
    if not torch.cuda.is_available():
        return False
    x, weight = (torch.empty(shape, device="cuda", dtype=torch.bfloat16) for shape in ((8, 64), (32, 64)))
    return quack_projection_unavailable_reason(x, weight) is None


ON_QUACK = pytest.mark.skipif(not _quack_ready(), reason="needs a Hopper GPU with quack-kernels installed")


@pytest.mark.parametrize("x_shape, weight_shape, reason", [
    ((4, 64), (32, 64), "CUDA"), ((4, 64), (32, 48), "not a [T, k] input"), ((4, 60), (32, 60), "multiples of 8"),
    ((4, 64), (36, 64), "multiples of 8"),
])
def test_declines_cpu_and_shapes_it_cannot_run(x_shape, weight_shape, reason: str) -> None:
    got = quack_projection_unavailable_reason(torch.randn(x_shape), torch.randn(weight_shape))
    assert got is not None and reason in got, got


@pytest.fixture
def broken_quack(monkeypatch: pytest.MonkeyPatch) -> None:
    """quack as a broken install leaves it: its first compile raises; a fresh failure record."""

    def broken_gemm(*args: object, **kwargs: object) -> torch.Tensor:
        raise TypeError("epilogue fn depends on <Logger>, which has no fail-closed semantic key")

    monkeypatch.setattr(module, "_quack_gemms", lambda: (module._QuackGEMMs(broken_gemm, broken_gemm), None))
    monkeypatch.setattr(module, "_failures", FailureRecord(QuackProjectionFailed))


@pytest.mark.usefixtures("broken_quack")
def test_a_failure_inside_quack_switches_it_off_for_the_run() -> None:
    x, weight = torch.randn(4, 64), torch.randn(32, 64)
    with pytest.raises(QuackProjectionFailed, match="TypeError: epilogue fn"):
        quack_projection(x, weight, torch.randn(4, 32))
    assert "quack failed earlier in this run: TypeError" in quack_projection_unavailable_reason(x, weight)


@pytest.mark.usefixtures("broken_quack")
@pytest.mark.parametrize("mistake", ["dtypes", "stream shape"])
def test_callers_mistakes_are_value_errors_that_keep_quack_on(mistake: str) -> None:
    x, weight, stream = torch.randn(4, 64), torch.randn(32, 64), torch.randn(4, 32)
    if mistake == "dtypes":
        stream = stream.bfloat16()
    else:
        stream = stream[:, :16]
    with pytest.raises(ValueError, match="one dtype" if mistake == "dtypes" else "must be"):
        quack_projection(x, weight, stream)
    assert module._failures.reason is None


@ON_QUACK
@pytest.mark.parametrize("tokens, k, n", [(4096, 1024, 4384), (1000, 2048, 1024), (37, 64, 128)])
@pytest.mark.parametrize("with_stream", [False, True], ids=["plain", "into-stream"])
@pytest.mark.parametrize("autocast", [False, True], ids=["bf16", "autocast-fp32-weight"])
def test_matches_reference(tokens: int, k: int, n: int, with_stream: bool, autocast: bool) -> None:
    torch.manual_seed(int(torch.randint(0, 2**31, ())))
    x = torch.randn(tokens, k, device="cuda").bfloat16().requires_grad_()
    weight = (torch.randn(n, k, device="cuda") / k**0.5).to(torch.float32 if autocast else torch.bfloat16)
    weight.requires_grad_()
    stream = torch.randn(tokens, n, device="cuda").bfloat16().requires_grad_() if with_stream else None
    leaves = [t for t in (x, weight, stream) if t is not None]
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        y = quack_projection(x, weight, stream)
    refs = [t.detach().double().requires_grad_() for t in leaves]
    y_ref = refs[0] @ refs[1].T + (refs[2] if with_stream else 0)
    assert y.dtype == torch.bfloat16
    assert_close("y", y, y_ref, 1e-2)
    dy = torch.randn_like(y)
    grads = torch.autograd.grad(y, leaves, dy)
    ref_grads = torch.autograd.grad(y_ref, refs, dy.double())
    for name, grad, ref, leaf in zip(["dx", "dweight", "dstream"], grads, ref_grads, leaves):
        assert grad.dtype == leaf.dtype, f"{name} dtype {grad.dtype} != {leaf.dtype}"
        assert_close(name, grad, ref, 1e-2)
