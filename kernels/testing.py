"""One tolerance rule for every kernel test and benchmark gate: relative error against a reference."""

import torch


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """||out - ref|| / ||ref||, computed in float64 so the measure itself adds no rounding."""
    out64, ref64 = out.detach().double(), ref.detach().double()
    denom = ref64.norm().item()
    diff = (out64 - ref64).norm().item()
    return diff / denom if denom > 0 else diff


def assert_close(name: str, out: torch.Tensor, ref: torch.Tensor, tol: float) -> None:
    """Fails on NaN, on a shape mismatch and on relative error above `tol`, naming the tensor."""
    assert out.shape == ref.shape, f"{name}: shape {tuple(out.shape)} != reference {tuple(ref.shape)}"
    assert not torch.isnan(out).any(), f"{name}: output has NaN"
    err = relative_error(out, ref)
    assert err <= tol, f"{name}: relative error {err:.2e} > {tol:.0e}"
