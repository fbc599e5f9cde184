"""Projections on quack's GEMMs against an fp64 matmul: output and both gradients (GPU with quack-kernels installed),
when they decline to run, and how a failure inside quack is remembered."""

import importlib

import pytest
import torch

from gristmill.kernels.fused.projection import (
    QuackProjectionFailed, quack_projection, quack_projection_unavailable_reason,
)
from gristmill.kernels.fused.quack_support import FailureRecord
from gristmill.kernels.testing import assert_close

module = importlib.import_module("gristmill.kernels.fused.projection.quack_projection")  # the package exports its function


def _quack_ready() -> bool:
    if not torch.cuda.is_available():
        return False
    x, w = torch.empty(8, 64, device="cuda", dtype=torch.bfloat16), torch.empty(64, 64, device="cuda", dtype=torch.bfloat16)
    return quack_projection_unavailable_reason(x, w) is None


ON_QUACK = pytest.mark.skipif(not _quack_ready(), reason="needs a Hopper GPU with quack-kernels installed")


@ON_QUACK
@pytest.mark.parametrize("tokens, d_in, d_out", [(4096, 1024, 1536), (1000, 256, 512), (37, 128, 384)])
@pytest.mark.parametrize("autocast", [False, True], ids=["bf16", "autocast-fp32-weight"])
def test_matches_fp64(tokens: int, d_in: int, d_out: int, autocast: bool) -> None:
    torch.manual_seed(int(torch.randint(0, 2**31, ())))
    x = torch.randn(tokens, d_in, device="cuda").bfloat16().requires_grad_()
    weight = (torch.randn(d_out, d_in, device="cuda") / d_in**0.5).to(torch.float32 if autocast else torch.bfloat16)
    weight.requires_grad_()
    dy = torch.randn(tokens, d_out, device="cuda").bfloat16()
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        y = quack_projection(x, weight)
    assert y.dtype == torch.bfloat16
    x64, w64 = (t.detach().double().requires_grad_() for t in (x, weight))
    y64 = x64 @ w64.T
    assert_close("y", y, y64, 1e-2)
    dx, dw = torch.autograd.grad(y, (x, weight), dy)
    dx64, dw64 = torch.autograd.grad(y64, (x64, w64), dy.double())
    assert dw.dtype == weight.dtype
    assert_close("dx", dx, dx64, 1e-2)
    assert_close("dweight", dw, dw64, 1e-2)


def test_declines_cpu_and_misaligned_widths() -> None:
    x, w = torch.randn(4, 16), torch.randn(24, 16)
    assert "CUDA" in quack_projection_unavailable_reason(x, w)
    if torch.cuda.is_available():
        assert quack_projection_unavailable_reason(x.cuda().bfloat16(), w[:20].cuda().bfloat16()) is not None


def test_a_failure_inside_quack_is_reported_and_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_gemm(*args: object, **kwargs: object) -> torch.Tensor:
        raise RuntimeError("cutlass DSL: no kernel for this arch\nsecond line")

    monkeypatch.setattr(module, "_quack_gemm", lambda: (broken_gemm, None))
    monkeypatch.setattr(module, "_failures", FailureRecord(QuackProjectionFailed))
    x, w = torch.randn(4, 16), torch.randn(24, 16)
    with pytest.raises(QuackProjectionFailed, match="RuntimeError: cutlass DSL: no kernel for this arch$"):
        quack_projection(x, w)
    assert "quack failed earlier in this run: RuntimeError" in quack_projection_unavailable_reason(x, w)


def test_mixed_dtypes_are_the_callers_error_and_keep_quack_on(monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(*args: object, **kwargs: object) -> torch.Tensor:
        raise AssertionError("quack must not be called with mixed dtypes")

    monkeypatch.setattr(module, "_quack_gemm", lambda: (unreachable, None))
    monkeypatch.setattr(module, "_failures", FailureRecord(QuackProjectionFailed))
    with pytest.raises(ValueError, match="one dtype"):
        quack_projection(torch.randn(4, 16).bfloat16(), torch.randn(24, 16))
    assert module._failures.reason is None
