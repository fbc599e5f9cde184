"""Stand-ins for quack's GEMMs, so the MLP ops' failure handling is tested without quack or a GPU."""

import pytest
import torch

from gristmill.kernels.fused.quack_support import FailureRecord
from gristmill.kernels.fused.swiglu_mlp import QuackMLPFailed, quack_mlp


def _install(monkeypatch: pytest.MonkeyPatch, gemm) -> None:
    """Every GEMM the MLP paths call becomes `gemm`, with a fresh failure record (none from an earlier test)."""
    gemms = quack_mlp._QuackGEMMs(*[gemm] * len(quack_mlp._QuackGEMMs._fields))
    monkeypatch.setattr(quack_mlp, "_quack_gemms", lambda: (gemms, None))
    monkeypatch.setattr(quack_mlp, "_failures", FailureRecord(QuackMLPFailed))


@pytest.fixture
def broken_quack_mlp(monkeypatch: pytest.MonkeyPatch) -> None:
    """quack as a broken install leaves it: its first compile raises."""

    def broken_gemm(*args: object, **kwargs: object) -> torch.Tensor:
        raise TypeError("epilogue fn depends on <Logger>, which has no fail-closed semantic key")

    _install(monkeypatch, broken_gemm)


@pytest.fixture
def unreachable_quack_mlp(monkeypatch: pytest.MonkeyPatch) -> None:
    """quack GEMMs that fail the test if an op calls them."""

    def unreachable(*args: object, **kwargs: object) -> torch.Tensor:
        raise AssertionError("quack must not be called with mixed dtypes")

    _install(monkeypatch, unreachable)
