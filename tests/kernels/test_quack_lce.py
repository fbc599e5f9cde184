"""Linear + cross-entropy through quack's scaled-exp pipeline against the float64 reference: summed loss and both
gradients (GPU with quack-kernels installed), and when it declines to run or has failed."""

import pytest
import torch

from gristmill.kernels.fused import linear_cross_entropy_reference
from gristmill.kernels.fused.linear_cross_entropy import quack_lce
from gristmill.kernels.fused.linear_cross_entropy.quack_lce import (
    QuackLossFailed, chunk_rows, quack_linear_cross_entropy, quack_linear_cross_entropy_unavailable_reason,
)
from gristmill.kernels.fused.quack_support import FailureRecord
from gristmill.kernels.testing import assert_close


def _quack_ready() -> bool:
    if not torch.cuda.is_available():
        return False
    hidden, weight = (torch.empty(shape, device="cuda", dtype=torch.bfloat16) for shape in ((8, 256), (1024, 256)))
    return quack_linear_cross_entropy_unavailable_reason(hidden, weight) is None


ON_QUACK = pytest.mark.skipif(not _quack_ready(), reason="needs an H100-class GPU with quack-kernels installed")


def test_declines_cpu_tensors_and_the_options_it_lacks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(quack_lce, "_failures", FailureRecord(QuackLossFailed))
    hidden, weight = torch.randn(8, 64), torch.randn(256, 64)
    assert "CUDA" in quack_linear_cross_entropy_unavailable_reason(hidden, weight)
    assert "z-loss" in quack_linear_cross_entropy_unavailable_reason(hidden, weight, z_loss=1e-4)
    assert "label smoothing" in quack_linear_cross_entropy_unavailable_reason(hidden, weight, label_smoothing=0.1)


@pytest.mark.parametrize("n_rows, width, vocab, expected", [
    (65536, 1024, 50304, 4096),   # the 350m models' step: 16 chunks of 4096
    (65536, 4096, 128256, 8192),  # 4096-row chunks would be as tall as the width
    (5000, 1024, 50304, 8192),    # 4096 leaves a last chunk of 904 rows, padded to 1024 = the width
    (4096, 1024, 4096, 2048),     # a single chunk would be 4096 rows = the vocab, whatever its size
    (4096, 2048, 4096, None),     # and 2048-row chunks are as tall as the width
])
def test_chunks_are_never_as_tall_as_the_width_or_the_vocab(
    n_rows: int, width: int, vocab: int, expected: int | None
) -> None:
    assert chunk_rows(n_rows, width, vocab) == expected


def test_a_failure_inside_quack_is_reported_and_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    """A broken quack install raises in its first compile: the op names the error once and says so from then on."""

    def broken(*args: object, **kwargs: object) -> torch.Tensor:
        raise TypeError("epilogue fn depends on <Logger>, which has no fail-closed semantic key")

    monkeypatch.setattr(quack_lce, "_quack_loss", lambda: (quack_lce._QuackLoss(broken, lambda *args: True), None))
    monkeypatch.setattr(quack_lce, "_failures", FailureRecord(QuackLossFailed))
    hidden, weight, labels = torch.randn(4, 16), torch.randn(32, 16), torch.tensor([1, 2, -100, 3])
    with pytest.raises(QuackLossFailed, match="TypeError: epilogue fn"):
        quack_linear_cross_entropy(hidden, weight, labels, ignore_index=-100)
    reason = quack_linear_cross_entropy_unavailable_reason(hidden, weight)
    assert "quack failed earlier in this run: TypeError" in reason


def test_bad_labels_are_the_callers_error_and_keep_quack_on(monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(*args: object, **kwargs: object) -> torch.Tensor:
        raise AssertionError("quack must not be called with bad labels")

    monkeypatch.setattr(quack_lce, "_quack_loss", lambda: (quack_lce._QuackLoss(unreachable, lambda *args: True), None))
    monkeypatch.setattr(quack_lce, "_failures", FailureRecord(QuackLossFailed))
    hidden, weight = torch.randn(4, 16), torch.randn(32, 16)
    with pytest.raises(ValueError, match="labels"):
        quack_linear_cross_entropy(hidden, weight, torch.tensor([1.0, 2.0, 3.0, 4.0]), ignore_index=-100)
    assert quack_lce._failures.reason is None


@ON_QUACK
@pytest.mark.parametrize("tokens, width, vocab", [
    (8192, 1024, 50304), (1000, 256, 4096), (4099, 512, 32000), (8192, 4096, 32000), (5000, 1024, 8192),
])
@pytest.mark.parametrize("autocast", [False, True], ids=["bf16", "autocast-fp32-weight"])
def test_matches_reference(tokens: int, width: int, vocab: int, autocast: bool) -> None:
    """Several chunks and a ragged last one; under autocast the float32 weight gets a float32 gradient."""
    torch.manual_seed(int(torch.randint(0, 2**31, ())))
    weight_dtype = torch.float32 if autocast else torch.bfloat16
    hidden = torch.randn(tokens, width, device="cuda").bfloat16().requires_grad_()
    weight = (torch.randn(vocab, width, device="cuda") / width**0.5).to(weight_dtype).requires_grad_()
    labels = torch.randint(0, vocab, (tokens,), device="cuda")
    labels[torch.rand(tokens, device="cuda") < 0.1] = -100
    refs = [t.detach().double().requires_grad_() for t in (hidden, weight)]
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        loss = quack_linear_cross_entropy(hidden, weight, labels, ignore_index=-100)
    loss_ref = linear_cross_entropy_reference(*refs, labels, ignore_index=-100, reduction="sum")
    assert_close("loss", loss.double(), loss_ref, 1e-3)
    grads = torch.autograd.grad(2.5 * loss, [hidden, weight])
    ref_grads = torch.autograd.grad(2.5 * loss_ref, refs)
    for name, grad, ref, leaf in zip(["dhidden", "dweight"], grads, ref_grads, [hidden, weight]):
        assert grad.dtype == leaf.dtype, f"{name} dtype {grad.dtype} != {leaf.dtype}"
        assert_close(name, grad, ref, 1e-2)


@ON_QUACK
def test_loss_without_grad_matches_reference() -> None:
    """Evaluation under no_grad takes quack's loss-only path (no dx or dW GEMMs)."""
    torch.manual_seed(int(torch.randint(0, 2**31, ())))
    hidden = torch.randn(5000, 1024, device="cuda").bfloat16()
    weight = (torch.randn(50304, 1024, device="cuda") / 32).bfloat16()
    labels = torch.randint(0, 50304, (5000,), device="cuda")
    labels[::7] = -100
    with torch.no_grad():
        loss = quack_linear_cross_entropy(hidden, weight, labels, ignore_index=-100)
    loss_ref = linear_cross_entropy_reference(hidden.double(), weight.double(), labels, reduction="sum")
    assert_close("loss", loss.double(), loss_ref, 1e-3)
