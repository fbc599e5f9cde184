"""The embedding lookup that casts as it gathers, and its sorted-order weight gradient, against float64: absent ids
(zero rows), ids more frequent than one summing step, widths that leave column blocks partly masked."""

import pytest
import torch

from gristmill.kernels.fused.embedding import BLOCK_COLS, BLOCK_TOKENS, embedding, embedding_reference

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
ON_GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _ids(rows: int, n_tokens: int, frequent: int) -> torch.Tensor:
    """Random ids in [1, rows) with id `frequent` taking a third of the tokens (several summing steps); id 0 absent."""
    ids = torch.randint(1, rows, (n_tokens,), device=DEVICE)
    ids[torch.randperm(n_tokens, device=DEVICE)[: n_tokens // 3]] = frequent
    return ids


@pytest.mark.parametrize(
    "rows, width, n_tokens, dtype",
    [
        pytest.param(50, BLOCK_COLS + 40, 5 * BLOCK_TOKENS + 3, torch.bfloat16, id="bf16-ragged"),
        pytest.param(7, 24, 9, torch.float32, id="f32-narrow"),
        pytest.param(300, 2 * BLOCK_COLS, 4 * BLOCK_TOKENS, torch.bfloat16, id="bf16-whole-blocks"),
        pytest.param(50304, 1024, 65536, torch.bfloat16, id="bf16-trainer-shape", marks=ON_GPU),
    ],
)
def test_matches_float64(rows: int, width: int, n_tokens: int, dtype: torch.dtype) -> None:
    weight = torch.randn(rows, width, device=DEVICE, requires_grad=True)
    ids = _ids(rows, n_tokens, frequent=rows // 2)
    grad = torch.randn(n_tokens, width, device=DEVICE).to(dtype)
    out = embedding(ids, weight, dtype)
    assert out.dtype == dtype
    # exact on a GPU; Triton's CPU interpreter truncates float32 to bf16 (one bf16 step, 2^-7, off torch's rounding)
    rounding = 0 if torch.cuda.is_available() else 2**-7
    torch.testing.assert_close(out, embedding_reference(ids, weight, dtype), rtol=rounding, atol=0)

    out.backward(grad)
    expected = torch.zeros(rows, width, dtype=torch.float64, device=DEVICE).index_add_(0, ids, grad.double())
    assert weight.grad.dtype == weight.dtype
    torch.testing.assert_close(weight.grad.double(), expected, rtol=1e-5, atol=1e-5 * n_tokens**0.5)
    assert not weight.grad[0].any(), "an id absent from the batch must get a zero gradient row"


def test_gradient_is_the_same_every_run() -> None:
    rows, width, n_tokens = 40, BLOCK_COLS, 6 * BLOCK_TOKENS
    weight = torch.randn(rows, width, device=DEVICE, requires_grad=True)
    ids = _ids(rows, n_tokens, frequent=3)
    grad = torch.randn(n_tokens, width, device=DEVICE).to(torch.bfloat16)
    grads = []
    for _ in range(2):
        embedding(ids, weight, torch.bfloat16).backward(grad)
        grads.append(weight.grad)
        weight.grad = None
    assert torch.equal(grads[0], grads[1])


def test_no_ids_give_an_empty_output_and_a_zero_gradient() -> None:
    weight = torch.randn(6, 40, device=DEVICE, requires_grad=True)
    out = embedding(torch.zeros(0, dtype=torch.long, device=DEVICE), weight, torch.bfloat16)
    assert out.shape == (0, 40)
    out.float().sum().backward()
    assert weight.grad.shape == weight.shape and not weight.grad.any()


def test_rejects_ids_that_are_not_one_dimensional_integers() -> None:
    weight = torch.randn(10, 8, device=DEVICE)
    with pytest.raises(ValueError, match="1-D integer ids"):
        embedding(torch.zeros(2, 3, dtype=torch.long, device=DEVICE), weight, torch.float32)
    with pytest.raises(ValueError, match="1-D integer ids"):
        embedding(torch.zeros(3, device=DEVICE), weight, torch.float32)
