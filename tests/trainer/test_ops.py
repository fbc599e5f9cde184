"""The dispatch between the kernels and the reference ops (trainer/ops.py)."""

import pytest
import torch
import torch.nn.functional as F

from gristmill.kernels.attention.projected_rotary_qkv import QuackQKVFailed
from gristmill.kernels.attention.rotary_qkv import rotary_qkv_attention_reference
from gristmill.kernels.fused import swiglu_halves_reference
from gristmill.kernels.fused.linear_cross_entropy.quack_lce import QuackLossFailed
from gristmill.kernels.fused.quack_projection import QuackProjectionFailed
from gristmill.kernels.fused.swiglu_mlp import QuackMLPFailed
from gristmill.kernels.interpreter import interpreting
from gristmill.kernels.testing import assert_close
from gristmill.trainer import ops
from gristmill.trainer.models.segments import Segments

# these run the Triton kernels on CPU tensors: on a GPU machine the interpreter is off and they would fail there
pytestmark = pytest.mark.skipif(not interpreting(), reason="runs Triton on CPU tensors: needs TRITON_INTERPRET=1")


def _failing_quack(monkeypatch: pytest.MonkeyPatch, op: str, reason: str, failure: type[Exception]) -> list[str]:
    """Puts ops on its kernel path (the interpreter runs the kernels on CPU tensors), with quack's `op` reported
    available by `reason` but raising `failure` when called; returns the list each call appends "quack" to."""
    calls: list[str] = []

    def failing_quack(*args: object, **kwargs: object) -> torch.Tensor:
        calls.append("quack")
        raise failure("TypeError: no fail-closed semantic key")

    monkeypatch.setattr(ops, "_on_kernel", lambda tensor: True)
    monkeypatch.setattr(ops, reason, lambda *args, **kwargs: None)
    monkeypatch.setattr(ops, op, failing_quack)
    return calls


def test_the_mlp_goes_on_without_quack_when_quack_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """ops.swiglu_mlp on the kernel path: if quack's MLP raises QuackMLPFailed, the step still gets the stream plus
    the MLP's value, from two matmuls around the SwiGLU kernel."""
    _failing_quack(monkeypatch, "swiglu_mlp_kernel", "swiglu_mlp_unavailable_reason", QuackMLPFailed)
    x, w1, w2, stream = torch.randn(5, 16), torch.randn(48, 16), torch.randn(16, 24), torch.randn(5, 16)
    expected = stream + F.linear(swiglu_halves_reference(F.linear(x, w1)), w2)
    torch.testing.assert_close(ops.swiglu_mlp(x, w1, w2, stream), expected)


def _loss_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return torch.randn(6, 16), torch.randn(40, 16), torch.tensor([1, 5, -100, 39, 0, 7])


def test_the_loss_goes_on_without_quack_when_quack_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """ops.linear_cross_entropy on the kernel path: if quack's loss raises QuackLossFailed, the step still gets the
    summed loss, from our chunked kernel."""
    _failing_quack(
        monkeypatch, "quack_linear_cross_entropy", "quack_linear_cross_entropy_unavailable_reason", QuackLossFailed
    )
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


def _attention_inputs() -> tuple[torch.Tensor, torch.Tensor, Segments]:
    doc_lengths = [5, 3]
    segments = Segments(
        cu_seqlens=torch.tensor([0, 5, 8], dtype=torch.int32), max_seqlen=5,
        position_ids=torch.cat([torch.arange(n) for n in doc_lengths]), rows=1,
    )
    return torch.randn(8, 32).bfloat16(), (torch.randn(6 * 64, 32) / 6).bfloat16(), segments


@pytest.mark.parametrize("quack_qkv", [True, False])
def test_attention_takes_quack_only_where_enabled_and_goes_on_when_it_fails(
    monkeypatch: pytest.MonkeyPatch, quack_qkv: bool
) -> None:
    """ops.project_rotary_attention on the kernel path: quack's projection is tried only where enabled, and when it
    raises QuackQKVFailed the step still gets attention's value, from a matmul and the RoPE + attention kernels."""
    calls = _failing_quack(
        monkeypatch, "projected_rotary_qkv_attention", "projected_rotary_qkv_attention_unavailable_reason",
        QuackQKVFailed,
    )
    x, weight, segments = _attention_inputs()
    ops.enable_kernels(True, quack_qkv=quack_qkv)
    try:
        out = ops.project_rotary_attention(x, weight, 4, 1, 10000.0, segments)
    finally:
        ops.enable_kernels(True)
    assert calls == (["quack"] if quack_qkv else [])
    expected = rotary_qkv_attention_reference(
        F.linear(x, weight).float(), segments.position_ids, segments.cu_seqlens, segments.max_seqlen,
        n_heads=4, n_kv_heads=1,
    )
    assert_close("out", out, expected, 1.5e-2)


@pytest.mark.parametrize("quack_qkv", [True, False])
def test_the_folded_norm_falls_back_to_the_norm_kernel(monkeypatch: pytest.MonkeyPatch, quack_qkv: bool) -> None:
    """ops.norm_project_rotary_attention with an rstd: the folded path is tried only where quack's qkv GEMMs are on,
    and when it fails the norm runs as a kernel of its own (from the stream itself, not the given rstd)."""
    op = "normed_projected_rotary_qkv_attention"
    calls = _failing_quack(monkeypatch, op, f"{op}_unavailable_reason", QuackQKVFailed)
    monkeypatch.setattr(ops, "projected_rotary_qkv_attention_unavailable_reason", lambda *args: "not here")
    stream, weight, segments = _attention_inputs()
    norm_weight = 1 + 0.1 * torch.randn(stream.shape[1])
    ops.enable_kernels(True, quack_qkv=quack_qkv)
    try:
        out, handed_back = ops.norm_project_rotary_attention(
            stream, torch.full((stream.shape[0],), 7.0), norm_weight, 1e-5, weight, 4, 1, 10000.0, segments
        )
    finally:
        ops.enable_kernels(True)
    assert calls == (["quack"] if quack_qkv else [])
    assert torch.equal(handed_back, stream)
    normed = stream.float() * torch.rsqrt(stream.float().square().mean(-1, keepdim=True) + 1e-5) * norm_weight
    expected = rotary_qkv_attention_reference(
        F.linear(normed, weight.float()), segments.position_ids, segments.cu_seqlens, segments.max_seqlen,
        n_heads=4, n_kv_heads=1,
    )
    assert_close("out", out, expected, 2e-2)


@pytest.mark.parametrize("quack_projections", [True, False])
@pytest.mark.parametrize("with_stream", [False, True], ids=["plain", "into-stream"])
def test_projections_take_quack_only_where_enabled_and_go_on_when_it_fails(
    monkeypatch: pytest.MonkeyPatch, quack_projections: bool, with_stream: bool
) -> None:
    calls = _failing_quack(
        monkeypatch, "quack_projection", "quack_projection_unavailable_reason", QuackProjectionFailed
    )
    monkeypatch.setattr(ops, "QUACK_PROJECTION_MIN_TOKENS", 5)
    x, weight, stream = torch.randn(5, 16), torch.randn(24, 16), torch.randn(5, 24)
    ops.enable_kernels(True, quack_projections=quack_projections)
    try:
        got = ops.project(x, weight, stream if with_stream else None)
    finally:
        ops.enable_kernels(True)
    assert calls == (["quack"] if quack_projections else [])
    torch.testing.assert_close(got, F.linear(x, weight) + (stream if with_stream else 0))


def test_projections_of_small_batches_stay_on_cublas(monkeypatch: pytest.MonkeyPatch) -> None:
    """Below QUACK_PROJECTION_MIN_TOKENS the host sets the pace and quack's costlier call would lose: not called."""

    def unreachable(*args: object) -> torch.Tensor:
        raise AssertionError("quack must not run a small batch's projection")

    monkeypatch.setattr(ops, "_on_kernel", lambda tensor: True)
    monkeypatch.setattr(ops, "quack_projection_unavailable_reason", lambda *tensors: None)
    monkeypatch.setattr(ops, "quack_projection", unreachable)
    x, weight = torch.randn(ops.QUACK_PROJECTION_MIN_TOKENS - 1, 16), torch.randn(24, 16)
    torch.testing.assert_close(ops.project(x, weight), F.linear(x, weight))
