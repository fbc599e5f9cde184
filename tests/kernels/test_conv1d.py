"""Triton causal depthwise conv1d against its per-document PyTorch reference, forward and backward, with
document starts inside the window (length-1 and empty documents, one document spanning the row).

Under the interpreter each program walks a block of 16 tokens and 32 channels; the backward walks on over the
next block's first 3 tokens (whose gradients its last dx rows need), and both kernels start from the 3 tokens
before their block. The block-edge cases put document starts, and documents shorter than the window, there."""

import pytest
import torch

from gristmill.kernels.ssd import causal_conv1d, causal_conv1d_reference
from gristmill.kernels.ssd.conv1d import _conv1d_bwd_kernel, _conv1d_fwd_kernel
from gristmill.kernels.testing import assert_close

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
ON_GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CASES = [
    pytest.param((1, 2, 0, 3, 30, 14), 24, torch.float32, 1e-5, id="f32-ragged-T50-C24"),
    pytest.param((70,), 80, torch.float32, 1e-5, id="f32-one-doc-T70-C80"),
    pytest.param((16, 1, 1, 14, 2, 1, 20), 40, torch.float32, 1e-5, id="f32-starts-after-block-edges-T55-C40"),
    pytest.param((13, 2, 1, 13, 11), 17, torch.float32, 1e-5, id="f32-starts-before-block-edges-T40-C17"),
    pytest.param((1, 900, 3, 0, 2000, 1), 512, torch.bfloat16, 1e-2, id="bf16-ragged-T2905-C512", marks=ON_GPU),
]


def check_against_reference(doc_lens, channels: int, width: int, dtype: torch.dtype, tol: float, activation,
                            with_bias: bool) -> None:
    """Output and every gradient of the Triton conv1d against the fp32 reference on fresh random inputs."""
    T = sum(doc_lens)
    cu = torch.tensor([0, *torch.tensor(doc_lens).cumsum(0).tolist()], dtype=torch.int32, device=DEVICE)
    x = torch.randn(T, channels, device=DEVICE, dtype=dtype)
    weight = torch.randn(channels, width, device=DEVICE, dtype=dtype) / 2
    bias = torch.randn(channels, device=DEVICE, dtype=dtype) if with_bias else None
    dy = torch.randn(T, channels, device=DEVICE)

    def run(fn, upcast: bool):
        leaves = [t if t is None else (t.float() if upcast else t).detach().requires_grad_() for t in (x, weight, bias)]
        y = fn(leaves[0], leaves[1], leaves[2], cu_seqlens=cu, activation=activation)
        grads = torch.autograd.grad((y.float() * dy).sum(), [t for t in leaves if t is not None])
        return y, grads

    y, grads = run(causal_conv1d, False)
    y_ref, grads_ref = run(causal_conv1d_reference, True)
    assert_close("y", y, y_ref, tol)
    for name, grad, ref in zip(["dx", "dweight", "dbias"], grads, grads_ref):
        assert_close(name, grad, ref, tol)


@pytest.mark.parametrize("doc_lens, channels, dtype, tol", CASES)
@pytest.mark.parametrize("activation", ["silu", None], ids=["silu", "linear"])
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no-bias"])
def test_causal_conv1d(doc_lens, channels: int, dtype: torch.dtype, tol: float, activation, with_bias: bool) -> None:
    torch.manual_seed(0)
    check_against_reference(doc_lens, channels, 4, dtype, tol, activation, with_bias)


@ON_GPU
@pytest.mark.parametrize(
    "config", _conv1d_bwd_kernel.configs,
    ids=lambda c: f"T{c.kwargs['BLOCK_T']}-C{c.kwargs['BLOCK_C']}-w{c.num_warps}-stages{c.kwargs['STAGES']}",
)
def test_causal_conv1d_every_launch_candidate(config, monkeypatch: pytest.MonkeyPatch) -> None:
    """The autotuner may pick any candidate at some width, so each is checked with both walks pinned to it: a
    pipelined loop can miscompile on Hopper where the interpreter sees nothing."""
    for kernel in (_conv1d_fwd_kernel, _conv1d_bwd_kernel):
        monkeypatch.setattr(kernel, "configs", [config])
        monkeypatch.setattr(kernel, "cache", {})
    torch.manual_seed(4)
    check_against_reference((1, 700, 3, 0, 250, 1, 41), 2304, 4, torch.bfloat16, 1e-2, "silu", True)


@pytest.mark.parametrize("width", [1, 2, 3])
def test_causal_conv1d_narrower_windows(width: int) -> None:
    """The backward carries a window of four taps; narrower kernels leave its extra taps at zero."""
    torch.manual_seed(3)
    check_against_reference((16, 2, 14, 1, 7), 17, width, torch.float32, 1e-5, "silu", True)


def test_causal_conv1d_reads_a_column_slice_in_place() -> None:
    """x as a column slice of a wider tensor (rows further apart than C) gives what its contiguous copy gives."""
    torch.manual_seed(2)
    wide = torch.randn(40, 30, device=DEVICE, requires_grad=True)
    weight = torch.randn(24, 4, device=DEVICE, requires_grad=True)
    cu = torch.tensor([0, 1, 17, 40], dtype=torch.int32, device=DEVICE)
    dy = torch.randn(40, 24, device=DEVICE)
    y = causal_conv1d(wide[:, 3:27], weight, cu_seqlens=cu)
    dwide, dweight = torch.autograd.grad((y * dy).sum(), [wide, weight])
    x = wide.detach()[:, 3:27].contiguous().requires_grad_()
    y_ref = causal_conv1d(x, weight, cu_seqlens=cu)
    dx_ref, dweight_ref = torch.autograd.grad((y_ref * dy).sum(), [x, weight])
    assert_close("y", y, y_ref, 1e-6)
    assert_close("dx", dwide[:, 3:27], dx_ref, 1e-6)
    assert_close("dweight", dweight, dweight_ref, 1e-6)


def test_causal_conv1d_never_reads_across_documents() -> None:
    torch.manual_seed(1)
    x = torch.randn(12, 8, device=DEVICE)
    weight = torch.randn(8, 4, device=DEVICE)
    cu = torch.tensor([0, 5, 12], dtype=torch.int32, device=DEVICE)
    packed = causal_conv1d(x, weight, cu_seqlens=cu)
    assert_close("second document", packed[5:], causal_conv1d(x[5:], weight), 1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"weight": torch.randn(7, 4)}, "weight"),
        ({"bias": torch.randn(3)}, "bias"),
        ({"activation": "gelu"}, "activation"),
        ({"weight": torch.randn(8, 5)}, "width 5"),
        ({"cu_seqlens": torch.tensor([0, 4], dtype=torch.int32)}, "cu_seqlens"),
    ],
    ids=["weight", "bias", "activation", "width", "cu-end"],
)
def test_causal_conv1d_rejects_bad_arguments(kwargs: dict, message: str) -> None:
    args = {"weight": torch.randn(8, 4), "bias": None, "activation": "silu", "cu_seqlens": None}
    args.update(kwargs)
    args = {k: v.to(DEVICE) if isinstance(v, torch.Tensor) else v for k, v in args.items()}
    with pytest.raises(ValueError, match=message):
        causal_conv1d(torch.randn(10, 8, device=DEVICE), args.pop("weight"), args.pop("bias"), **args)
