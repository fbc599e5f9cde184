"""Chunked linear + cross-entropy against the float64 full-logits reference: loss and both gradients."""

import pytest
import torch
import triton

from gristmill.kernels.fused import linear_cross_entropy, linear_cross_entropy_reference
from gristmill.kernels.fused.linear_cross_entropy.reference import cross_entropy_reference
from gristmill.kernels.fused.linear_cross_entropy.rows_kernel import (
    ONE_PASS_MAX_ROW_BYTES,
    RowsLaunch,
    cross_entropy_rows,
    plan_rows_launch,
)
from gristmill.kernels.testing import assert_close

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
ON_GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
IGNORE = -100

SHAPES = [
    pytest.param(torch.float32, 37, 24, 5000, 16, 1e-5, id="f32-N37-D24-V5000-chunk16"),
    pytest.param(torch.bfloat16, 19, 32, 700, 8, 1e-2, id="bf16-N19-D32-V700-chunk8"),
    pytest.param(torch.bfloat16, 4096, 1024, 50257, 1024, 1e-2, id="bf16-N4096-D1024-V50257-chunk1024",
                 marks=ON_GPU),
    pytest.param(torch.float32, 1000, 256, 32000, None, 1e-4, id="f32-N1000-D256-V32000-auto", marks=ON_GPU),
    pytest.param(torch.bfloat16, 600, 256, 128256, 256, 1e-2, id="bf16-N600-D256-V128256-chunk256", marks=ON_GPU),
]
OPTIONS = [
    pytest.param("mean", 0.0, 0.0, id="mean"),
    pytest.param("mean", 1e-3, 0.1, id="mean-zloss-smooth"),
    pytest.param("sum", 1e-2, 0.0, id="sum-zloss"),
    pytest.param("none", 0.0, 0.2, id="none-smooth"),
]


def _inputs(dtype: torch.dtype, n_rows: int, dim: int, vocab: int, ignore_fraction: float = 0.2):
    hidden = torch.randn(n_rows, dim, device=DEVICE).to(dtype)
    weight = (torch.randn(vocab, dim, device=DEVICE) / dim**0.5).to(dtype)
    labels = torch.randint(0, vocab, (n_rows,), device=DEVICE)
    labels[torch.rand(n_rows, device=DEVICE) < ignore_fraction] = IGNORE
    return hidden, weight, labels


def _loss_and_grads(fn, hidden, weight, labels, loss_weights, **options):
    hidden, weight = hidden.detach().clone().requires_grad_(), weight.detach().clone().requires_grad_()
    loss = fn(hidden, weight, labels, ignore_index=IGNORE, **options)
    scalar = loss if loss.dim() == 0 else (loss * loss_weights.to(loss.dtype)).sum()
    return loss, torch.autograd.grad(scalar, (hidden, weight))


@pytest.mark.parametrize("reduction, z_loss, label_smoothing", OPTIONS)
@pytest.mark.parametrize("dtype, n_rows, dim, vocab, chunk_size, tol", SHAPES)
def test_linear_cross_entropy(dtype, n_rows, dim, vocab, chunk_size, tol, reduction, z_loss, label_smoothing):
    torch.manual_seed(0)
    hidden, weight, labels = _inputs(dtype, n_rows, dim, vocab)
    loss_weights = torch.randn(n_rows, device=DEVICE)
    options = dict(z_loss=z_loss, label_smoothing=label_smoothing, reduction=reduction)
    loss, grads = _loss_and_grads(
        linear_cross_entropy, hidden, weight, labels, loss_weights, chunk_size=chunk_size, **options
    )
    ref_loss, ref_grads = _loss_and_grads(
        linear_cross_entropy_reference, hidden.double(), weight.double(), labels, loss_weights, **options
    )
    assert_close("loss", loss, ref_loss, tol)
    for name, grad, ref in zip(["dhidden", "dweight"], grads, ref_grads):
        assert_close(name, grad, ref, tol)


def test_linear_cross_entropy_all_ignored_gives_zero() -> None:
    hidden, weight, labels = _inputs(torch.float32, 9, 8, 300, ignore_fraction=1.1)
    loss, (dhidden, dweight) = _loss_and_grads(linear_cross_entropy, hidden, weight, labels, None, chunk_size=4)
    assert loss.item() == 0.0
    assert not dhidden.any() and not dweight.any()


def test_linear_cross_entropy_without_grad_matches() -> None:
    torch.manual_seed(0)
    hidden, weight, labels = _inputs(torch.float32, 21, 16, 700)
    with torch.no_grad():
        loss = linear_cross_entropy(hidden, weight, labels, z_loss=1e-3, chunk_size=8)
    ref = linear_cross_entropy_reference(hidden.double(), weight.double(), labels, z_loss=1e-3)
    assert_close("loss", loss, ref, 1e-5)


def test_linear_cross_entropy_rejects_bad_reduction() -> None:
    hidden, weight, labels = _inputs(torch.float32, 4, 8, 16)
    with pytest.raises(ValueError, match="reduction 'avg'"):
        linear_cross_entropy(hidden, weight, labels, reduction="avg")


def test_linear_cross_entropy_under_autocast_matches_reference_under_autocast() -> None:
    """float32 parameters under bf16 autocast (the trainer's mode): same loss, float32 gradients."""
    torch.manual_seed(0)
    hidden, weight, labels = _inputs(torch.float32, 23, 32, 900)
    with torch.autocast(DEVICE, dtype=torch.bfloat16):
        loss, grads = _loss_and_grads(linear_cross_entropy, hidden, weight, labels, None, chunk_size=8)
        ref_loss, ref_grads = _loss_and_grads(linear_cross_entropy_reference, hidden, weight, labels, None)
    assert_close("loss", loss, ref_loss, 1e-2)
    for name, grad, ref in zip(["dhidden", "dweight"], grads, ref_grads):
        assert grad.dtype == torch.float32, f"{name} dtype {grad.dtype}"
        assert_close(name, grad, ref, 1e-2)


def test_linear_cross_entropy_frozen_weight_gives_hidden_grad_only() -> None:
    torch.manual_seed(0)
    hidden, weight, labels = _inputs(torch.float32, 13, 16, 400)
    hidden.requires_grad_()
    loss = linear_cross_entropy(hidden, weight, labels, chunk_size=4)
    (grad,) = torch.autograd.grad(loss, hidden)
    ref_hidden = hidden.detach().double().requires_grad_()
    (ref,) = torch.autograd.grad(linear_cross_entropy_reference(ref_hidden, weight.double(), labels), ref_hidden)
    assert_close("dhidden", grad, ref, 1e-5)


ROW_LAUNCHES = {  # by vocab: two-pass blocks a quarter of the row or 4096, so the loop runs several times
    "planned": lambda vocab: None,
    "one-pass": lambda vocab: RowsLaunch(one_pass=True, block_v=triton.next_power_of_2(vocab), num_warps=32),
    "two-pass": lambda vocab: RowsLaunch(False, min(4096, triton.next_power_of_2(vocab) // 4), num_warps=8),
}
ROW_SHAPES = [
    pytest.param(torch.float32, 45, 1500, 1e-5, id="f32-N45-V1500"),
    pytest.param(torch.bfloat16, 33, 1111, 1e-2, id="bf16-N33-V1111"),
    pytest.param(torch.bfloat16, 256, 32000, 1e-2, id="bf16-N256-V32000", marks=ON_GPU),
    pytest.param(torch.bfloat16, 256, 50304, 1e-2, id="bf16-N256-V50304", marks=ON_GPU),
    pytest.param(torch.bfloat16, 128, 128256, 1e-2, id="bf16-N128-V128256", marks=ON_GPU),
]
ROW_OPTIONS = [
    pytest.param(0.0, 0.0, "row", id="per-row-scale"),
    pytest.param(1e-3, 0.1, "scalar", id="zloss-smooth-scalar-scale"),
    pytest.param(1e-2, 0.0, None, id="zloss-loss-only"),
]


def logits_bytes(dtype: torch.dtype) -> int:
    return torch.empty(0, dtype=dtype).element_size()


def _rows_reference(logits: torch.Tensor, labels: torch.Tensor, scale: torch.Tensor | None, z_loss: float,
                    label_smoothing: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-row losses and d (Σ scale · loss) / d logits in float64."""
    logits64 = logits.double().requires_grad_()
    losses = cross_entropy_reference(
        logits64, labels, ignore_index=IGNORE, z_loss=z_loss, label_smoothing=label_smoothing, reduction="none"
    )
    if scale is None:
        return losses, None
    (grad,) = torch.autograd.grad((losses * scale.double()).sum(), logits64)
    return losses, grad


@pytest.mark.parametrize("z_loss, label_smoothing, scale_kind", ROW_OPTIONS)
@pytest.mark.parametrize("launch_kind", ROW_LAUNCHES)
@pytest.mark.parametrize("dtype, n_rows, vocab, tol", ROW_SHAPES)
def test_cross_entropy_rows(dtype, n_rows, vocab, tol, launch_kind, z_loss, label_smoothing, scale_kind):
    """Both rows kernels (loss, and the gradient written over the logits) against the float64 reference."""
    launch = ROW_LAUNCHES[launch_kind](vocab)
    if launch is not None and launch.one_pass and launch.block_v * logits_bytes(dtype) > ONE_PASS_MAX_ROW_BYTES:
        pytest.skip(f"one pass is planned only for rows up to {ONE_PASS_MAX_ROW_BYTES} bytes")
    logits = torch.randn(n_rows, vocab, device=DEVICE).mul_(3.0).to(dtype)
    labels = torch.randint(0, vocab, (n_rows,), device=DEVICE)
    labels[torch.rand(n_rows, device=DEVICE) < 0.2] = IGNORE
    scale = {
        "row": torch.rand(n_rows, device=DEVICE) + 0.5, "scalar": torch.rand(1, device=DEVICE) + 0.5, None: None,
    }[scale_kind]
    ref_loss, ref_grad = _rows_reference(logits, labels, None if scale is None else scale.expand(n_rows), z_loss,
                                         label_smoothing)
    loss = torch.full((n_rows,), float("nan"), device=DEVICE)
    written = logits.clone()
    cross_entropy_rows(written, labels, loss, scale, IGNORE, z_loss, label_smoothing, launch)
    assert_close("loss", loss, ref_loss, tol)
    if ref_grad is None:
        assert torch.equal(written, logits), "loss-only launch changed the logits"
    else:
        assert_close("dlogits", written, ref_grad, tol)


def test_plan_rows_launch_switches_to_two_passes_above_the_limit() -> None:
    assert plan_rows_launch(32000, 2).one_pass
    assert not plan_rows_launch(50304, 2).one_pass
    assert plan_rows_launch(1000, 4, one_pass_max_row_bytes=4096).one_pass
    assert not plan_rows_launch(1025, 4, one_pass_max_row_bytes=4096).one_pass


def test_cross_entropy_rows_rejects_a_one_pass_block_shorter_than_the_row() -> None:
    logits = torch.randn(2, 300, device=DEVICE)
    labels = torch.zeros(2, dtype=torch.long, device=DEVICE)
    with pytest.raises(ValueError, match="block_v 256"):
        cross_entropy_rows(logits, labels, torch.empty(2, device=DEVICE), None, IGNORE, 0.0, 0.0,
                           RowsLaunch(one_pass=True, block_v=256, num_warps=4))
