"""Fused RMSNorm and gated RMSNorm against their float64 references: output, residual stream and every gradient.

The interpreter's backward tile holds 256 elements (4 rows of 48 or 40, 2 of 100, 1 of 300), so row counts that
are not a multiple of it (15, 13, 7, 5) and widths that are not powers of two exercise the row and column masks."""

import pytest
import torch
import triton

from gristmill.kernels.fused.rms_norm import gated_rms_norm, gated_rms_norm_reference, rms_norm, rms_norm_reference
from gristmill.kernels.fused.rms_norm.triton_fwd_bwd import _rms_norm_bwd_kernel
from gristmill.kernels.testing import assert_close

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
ON_GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CASES = [
    pytest.param(torch.float32, (3, 5, 48), 1e-5, id="f32-B3-T5-D48"),
    pytest.param(torch.float32, (1, 100), 1e-5, id="f32-T1-D100"),
    pytest.param(torch.bfloat16, (4, 64), 1e-2, id="bf16-T4-D64"),
    pytest.param(torch.float32, (13, 100), 1e-5, id="f32-T13-D100"),
    pytest.param(torch.float32, (5, 300), 1e-5, id="f32-T5-D300"),  # one-row tiles
    pytest.param(torch.bfloat16, (2, 1000, 4096), 1e-2, id="bf16-B2-T1000-D4096", marks=ON_GPU),
    pytest.param(torch.float32, (777, 1536), 1e-5, id="f32-T777-D1536", marks=ON_GPU),
]


def _leaves(*tensors: torch.Tensor) -> list[torch.Tensor]:
    return [t.detach().clone().requires_grad_() for t in tensors]


def _norm_returning_the_stream(fn, x, weight, eps):
    """(y, x): the kernel hands x back through the norm (`return_stream`), the reference returns x itself and
    autograd sums x's two gradients."""
    if fn is rms_norm:
        return fn(x, weight, eps=eps, return_stream=True)
    return fn(x, weight, eps=eps), x


@pytest.mark.parametrize("dtype, shape, tol", CASES)
@pytest.mark.parametrize("stream_mode", ["plain", "residual", "returned"])
def test_rms_norm(dtype: torch.dtype, shape: tuple[int, ...], tol: float, stream_mode: str) -> None:
    """plain: y alone; residual: y and the stream x + residual; returned: y and x handed back, whose gradient
    joins the norm's (the trainer's layers add into the stream after the norm)."""
    torch.manual_seed(0)
    x = torch.randn(shape, device=DEVICE, dtype=dtype)
    residual = torch.randn(shape, device=DEVICE, dtype=dtype)
    weight = 1.0 + 0.1 * torch.randn(shape[-1], device=DEVICE, dtype=dtype)
    dy, dstream = torch.randn_like(x), torch.randn_like(x)

    def run(fn, x, weight, residual):
        if stream_mode == "plain":
            y = fn(x, weight, eps=1e-6)
            return (y,), torch.autograd.grad(y, (x, weight), dy.to(y.dtype))
        if stream_mode == "returned":
            y, stream = _norm_returning_the_stream(fn, x, weight, 1e-6)
            grads = torch.autograd.grad((y, stream), (x, weight), (dy.to(y.dtype), dstream.to(y.dtype)))
            return (y, stream), grads
        y, stream = fn(x, weight, eps=1e-6, residual=residual)
        grads = torch.autograd.grad((y, stream), (x, weight, residual), (dy.to(y.dtype), dstream.to(y.dtype)))
        return (y, stream), grads

    outs, grads = run(rms_norm, *_leaves(x, weight, residual))
    ref_outs, ref_grads = run(rms_norm_reference, *_leaves(x.double(), weight.double(), residual.double()))
    for name, out, ref in zip(["y", "stream"], outs, ref_outs):
        assert_close(name, out, ref, tol)
    for name, grad, ref in zip(["dx", "dweight", "dresidual"], grads, ref_grads):
        assert_close(name, grad, ref, tol)


GATED_CASES = [
    pytest.param(torch.float32, (3, 5, 48), 1e-5, id="f32-B3-T5-D48"),
    pytest.param(torch.bfloat16, (7, 100), 1e-2, id="bf16-T7-D100"),
    pytest.param(torch.float32, (1, 40), 1e-5, id="f32-T1-D40"),
    pytest.param(torch.float32, (5, 300), 1e-5, id="f32-T5-D300"),
    pytest.param(torch.bfloat16, (4097, 2048), 1e-2, id="bf16-T4097-D2048", marks=ON_GPU),
    pytest.param(torch.float32, (777, 1536), 1e-5, id="f32-T777-D1536", marks=ON_GPU),
]


@pytest.mark.parametrize("dtype, shape, tol", GATED_CASES)
@pytest.mark.parametrize("gate_layout", ["contiguous", "column-slice"])
def test_gated_rms_norm(dtype: torch.dtype, shape: tuple[int, ...], tol: float, gate_layout: str) -> None:
    """y and the gradients of x, the gate and the weight; a column-slice gate is read (and its gradient
    returned) through the wider tensor it lives in, as the Mamba2 mixer's z inside the in_proj output."""
    torch.manual_seed(0)
    dim = shape[-1]
    x = torch.randn(shape, device=DEVICE, dtype=dtype)
    gate_source = torch.randn(*shape[:-1], dim + 7 if gate_layout == "column-slice" else dim, device=DEVICE)
    weight = 1.0 + 0.1 * torch.randn(dim, device=DEVICE, dtype=dtype)
    dy = torch.randn_like(x)

    def run(fn, x, gate_source, weight):
        y = fn(x, gate_source[..., 3 : 3 + dim] if gate_layout == "column-slice" else gate_source, weight, eps=1e-6)
        return y, torch.autograd.grad(y, (x, gate_source, weight), dy.to(y.dtype))

    y, grads = run(gated_rms_norm, *_leaves(x, gate_source.to(dtype), weight))
    y_ref, ref_grads = run(gated_rms_norm_reference, *_leaves(x.double(), gate_source.double(), weight.double()))
    assert y.dtype == dtype
    assert_close("y", y, y_ref, tol)
    for name, grad, ref in zip(["dx", "dgate", "dweight"], grads, ref_grads):
        assert_close(name, grad, ref, tol)


def _launch_id(config: triton.Config) -> str:
    meta = config.kwargs
    return f"tile{meta['TILE']}-w{config.num_warps}-{meta['PROGRAMS_PER_SM']}-per-sm-stages{meta['LOOP_STAGES']}"


@ON_GPU
@pytest.mark.parametrize("config", _rms_norm_bwd_kernel.configs, ids=_launch_id)
def test_backward_every_launch_candidate(config, monkeypatch: pytest.MonkeyPatch) -> None:
    """The autotuner may pick any candidate at some width, so each is checked pinned, on the gated norm (gate in a
    wider tensor), the residual one and the one that hands its input back (the trainer's): a pipelined loop can
    miscompile on Hopper where the interpreter sees nothing."""
    monkeypatch.setattr(_rms_norm_bwd_kernel, "configs", [config])
    monkeypatch.setattr(_rms_norm_bwd_kernel, "cache", {})
    test_gated_rms_norm(torch.bfloat16, (4097, 2048), 1e-2, "column-slice")
    for stream_mode in ("residual", "returned"):
        test_rms_norm(torch.bfloat16, (3001, 1024), 1e-2, stream_mode)


def test_rms_norm_rejects_mismatched_weight() -> None:
    with pytest.raises(ValueError, match="weight shape"):
        rms_norm(torch.randn(2, 8, device=DEVICE), torch.ones(6, device=DEVICE))


@pytest.mark.parametrize(
    "gate_shape, eps, message", [((2, 6), 1e-6, "gate shape"), ((2, 8), 0.0, "eps")], ids=["gate-shape", "eps"]
)
def test_gated_rms_norm_rejects_bad_arguments(gate_shape: tuple[int, int], eps: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        gated_rms_norm(torch.randn(2, 8, device=DEVICE), torch.randn(gate_shape, device=DEVICE),
                       torch.ones(8, device=DEVICE), eps=eps)


def test_rms_norm_bf16_input_with_float32_weight() -> None:
    """The autocast layout: bf16 activations, float32 parameter; y keeps x's dtype, dweight the weight's."""
    torch.manual_seed(0)
    x = torch.randn(6, 40, device=DEVICE, dtype=torch.bfloat16, requires_grad=True)
    weight = (1.0 + 0.1 * torch.randn(40, device=DEVICE)).requires_grad_()
    y = rms_norm(x, weight)
    dx, dweight = torch.autograd.grad(y, (x, weight), torch.ones_like(y))
    x_ref, weight_ref = (t.detach().double().requires_grad_() for t in (x, weight))
    y_ref = rms_norm_reference(x_ref, weight_ref)
    dx_ref, dweight_ref = torch.autograd.grad(y_ref, (x_ref, weight_ref), torch.ones_like(y_ref))
    assert (y.dtype, dx.dtype, dweight.dtype) == (torch.bfloat16, torch.bfloat16, torch.float32)
    assert_close("y", y, y_ref, 1e-2)
    assert_close("dx", dx, dx_ref, 1e-2)
    assert_close("dweight", dweight, dweight_ref, 1e-2)
