"""The qkv projection on quack's GEMM with RoPE in its epilogue, then attention, against the float64 composition of
the references (GPU with quack-kernels installed): output, dx and dweight over ragged packed documents, a packed row
against its documents one by one, the variant with the input RMSNorm folded in; and when it declines or fails
(CPU)."""

import pytest
import torch

from gristmill.kernels.attention import attention_reference, projected_rotary_qkv
from gristmill.kernels.attention.projected_rotary_qkv import (
    QuackQKVFailed, normed_projected_rotary_qkv_attention, normed_projected_rotary_qkv_attention_unavailable_reason,
    projected_rotary_qkv_attention, projected_rotary_qkv_attention_unavailable_reason,
)
from gristmill.kernels.attention.rotary_qkv import split_qkv
from gristmill.kernels.fused import apply_rope_reference, rms_norm_reference
from gristmill.kernels.fused.quack_support import FailureRecord
from gristmill.kernels.interpreter import interpreting
from gristmill.kernels.testing import assert_close


def _quack_ready() -> bool:
    if not torch.cuda.is_available():
        return False
    x, weight = torch.empty(8, 64, device="cuda", dtype=torch.bfloat16), torch.empty(384, 64, device="cuda")
    return projected_rotary_qkv_attention_unavailable_reason(x, weight.bfloat16(), 4, 1) is None


ON_QUACK = pytest.mark.skipif(not _quack_ready(), reason="needs a Hopper GPU with quack-kernels installed")
THETA = 10000.0
REFERENCE_SHAPES = pytest.mark.parametrize("doc_lengths, width, heads, head_dim", [
    ([1, 700, 1, 3000, 129, 1, 4361], 1024, (16, 4), 64),
    ([2048, 1, 1000, 1047], 512, (8, 2), 128),
    ([37, 3], 128, (2, 2), 64),
])
AUTOCAST = pytest.mark.parametrize("autocast", [False, True], ids=["bf16", "autocast-fp32-weight"])


def _offsets(doc_lengths: list[int], device: str) -> torch.Tensor:
    return torch.tensor([0, *torch.tensor(doc_lengths).cumsum(0).tolist()], dtype=torch.int32, device=device)


def _positions(doc_lengths: list[int], device: str) -> torch.Tensor:
    return torch.cat([torch.arange(n, dtype=torch.int32) for n in doc_lengths]).to(device)


def _reference(x, weight, doc_lengths, n_heads, n_kv_heads):
    """Projection, RoPE, then attention one document at a time, in the inputs' (float64) precision."""
    q, k, v = split_qkv(x @ weight.T, n_heads, n_kv_heads)
    q, k = apply_rope_reference(q, k, _positions(doc_lengths, x.device), THETA)
    return attention_reference(q, k, v, _offsets(doc_lengths, x.device), max(doc_lengths))


@pytest.mark.parametrize("width, rows, reason", [
    (64, 6 * 64, "CUDA"), (64, 380, "qkv weight"), (64, 6 * 48, "head dim 48"), (60, 6 * 64, "multiple of 8"),
])
def test_declines_cpu_and_shapes_it_cannot_run(width: int, rows: int, reason: str) -> None:
    got = projected_rotary_qkv_attention_unavailable_reason(torch.randn(4, width), torch.randn(rows, width), 4, 1)
    assert got is not None and reason in got, got


@pytest.fixture
def broken_quack_qkv(monkeypatch: pytest.MonkeyPatch) -> None:
    """quack as a broken install leaves it: its first compile raises; a fresh failure record."""

    def broken_gemm(*args: object, **kwargs: object) -> dict[str, torch.Tensor]:
        raise TypeError("epilogue fn depends on <Logger>, which has no fail-closed semantic key")

    def frequencies(inv_freq: torch.Tensor, rotary_n: int, nonrotary_n: int) -> torch.Tensor:
        return torch.zeros(rotary_n + nonrotary_n)

    gemms = projected_rotary_qkv._QuackGEMMs(broken_gemm, frequencies, broken_gemm)
    monkeypatch.setattr(projected_rotary_qkv, "_quack_gemms", lambda: (gemms, None))
    monkeypatch.setattr(projected_rotary_qkv, "_failures", FailureRecord(QuackQKVFailed))


@pytest.mark.usefixtures("broken_quack_qkv")
def test_a_failure_inside_quack_switches_it_off_for_the_run() -> None:
    doc_lengths = [3, 5]
    x, weight = torch.randn(8, 64), torch.randn(6 * 64, 64)
    args = (_positions(doc_lengths, "cpu"), _offsets(doc_lengths, "cpu"), 5)
    with pytest.raises(QuackQKVFailed, match="TypeError: epilogue fn"):
        projected_rotary_qkv_attention(x, weight, *args, n_heads=4, n_kv_heads=1)
    assert "quack failed earlier in this run: TypeError" in projected_rotary_qkv_attention_unavailable_reason(
        x, weight, 4, 1
    )


@pytest.mark.usefixtures("broken_quack_qkv")
@pytest.mark.parametrize("mistake, message", [
    ("dtypes", "one dtype"), ("positions", "position_ids"), ("offsets", "cu_seqlens must run from 0"),
    ("heads", "must be positive and divide"),
])
def test_callers_mistakes_are_value_errors_that_keep_quack_on(mistake: str, message: str) -> None:
    doc_lengths = [3, 5]
    x, weight = torch.randn(8, 64), torch.randn(6 * 64, 64)
    positions, offsets, heads = _positions(doc_lengths, "cpu"), _offsets(doc_lengths, "cpu"), (4, 1)
    if mistake == "dtypes":
        x = x.bfloat16()
    elif mistake == "positions":
        positions = positions[:-1]
    elif mistake == "offsets":
        offsets = _offsets([3, 4], "cpu")
    else:
        heads = (4, 3)
    with pytest.raises(ValueError, match=message):
        projected_rotary_qkv_attention(x, weight, positions, offsets, 5, n_heads=heads[0], n_kv_heads=heads[1])
    assert projected_rotary_qkv._failures.reason is None


@ON_QUACK
@REFERENCE_SHAPES
@AUTOCAST
def test_matches_reference(doc_lengths: list[int], width: int, heads: tuple[int, int], head_dim: int,
                           autocast: bool) -> None:
    torch.manual_seed(int(torch.randint(0, 2**31, ())))
    tokens, (n_heads, n_kv_heads) = sum(doc_lengths), heads
    x = torch.randn(tokens, width, device="cuda").bfloat16().requires_grad_()
    weight = (torch.randn((n_heads + 2 * n_kv_heads) * head_dim, width, device="cuda") / width**0.5)
    weight = weight.to(torch.float32 if autocast else torch.bfloat16).requires_grad_()
    args = (_positions(doc_lengths, "cuda"), _offsets(doc_lengths, "cuda"), max(doc_lengths))
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        out = projected_rotary_qkv_attention(x, weight, *args, n_heads=n_heads, n_kv_heads=n_kv_heads)
    assert out.shape == (tokens, n_heads, head_dim) and out.dtype == torch.bfloat16
    refs = [t.detach().double().requires_grad_() for t in (x, weight)]
    out_ref = _reference(*refs, doc_lengths, n_heads, n_kv_heads)
    assert_close("out", out, out_ref, 2e-2)
    dout = torch.randn_like(out)
    grads = torch.autograd.grad(out, (x, weight), dout)
    ref_grads = torch.autograd.grad(out_ref, refs, dout.double())
    for name, grad, ref, leaf in zip(["dx", "dweight"], grads, ref_grads, (x, weight)):
        assert grad.dtype == leaf.dtype, f"{name} dtype {grad.dtype} != {leaf.dtype}"
        assert_close(name, grad, ref, 2e-2)


@ON_QUACK
def test_packed_row_equals_documents_one_by_one() -> None:
    """Each document alone (positions from 0, no neighbours) gives the packed row's output and input-gradient rows."""
    torch.manual_seed(int(torch.randint(0, 2**31, ())))
    doc_lengths, n_heads, n_kv_heads, head_dim = [300, 1, 77, 1000], 4, 2, 64
    x = torch.randn(sum(doc_lengths), 256, device="cuda").bfloat16().requires_grad_()
    weight = (torch.randn((n_heads + 2 * n_kv_heads) * head_dim, 256, device="cuda") / 16).bfloat16()
    settings = dict(n_heads=n_heads, n_kv_heads=n_kv_heads)
    packed = projected_rotary_qkv_attention(
        x, weight, _positions(doc_lengths, "cuda"), _offsets(doc_lengths, "cuda"), max(doc_lengths), **settings
    )
    dout = torch.randn_like(packed)
    (packed_grad,) = torch.autograd.grad(packed, x, dout)
    start = 0
    for length in doc_lengths:
        doc_x = x[start : start + length].detach().requires_grad_()
        alone = projected_rotary_qkv_attention(
            doc_x, weight, _positions([length], "cuda"), _offsets([length], "cuda"), length, **settings
        )
        (alone_grad,) = torch.autograd.grad(alone, doc_x, dout[start : start + length])
        assert_close(f"out {start}", packed[start : start + length], alone, 1e-2)
        assert_close(f"dx {start}", packed_grad[start : start + length], alone_grad, 1e-2)
        start += length


def _assert_normed_matches_reference(
    out: torch.Tensor, handed_back: torch.Tensor, leaves: tuple[torch.Tensor, ...], eps: float,
    doc_lengths: list[int], n_heads: int, n_kv_heads: int,
) -> None:
    """The normed op's output and the gradients of its leaves (stream, norm weight, weight) against the float64
    composition of RMSNorm and `_reference`, a random gradient flowing into the handed-back stream too."""
    refs = [t.detach().double().requires_grad_() for t in leaves]
    out_ref = _reference(rms_norm_reference(refs[0], refs[1], eps), refs[2], doc_lengths, n_heads, n_kv_heads)
    assert_close("out", out, out_ref, 2e-2)
    dout, dstream = torch.randn_like(out), torch.randn_like(handed_back)
    grads = torch.autograd.grad((out, handed_back), leaves, (dout, dstream))
    ref_grads = torch.autograd.grad((out_ref, refs[0]), refs, (dout.double(), dstream.double()))
    for name, grad, ref, leaf in zip(["dstream", "dnorm_weight", "dweight"], grads, ref_grads, leaves):
        assert grad.dtype == leaf.dtype, f"{name} dtype {grad.dtype} != {leaf.dtype}"
        assert_close(name, grad, ref, 2e-2)


def _stand_in_gemms(n_heads: int, n_kv_heads: int) -> tuple[object, object]:
    """quack's GEMMs and epilogues for the normed path, in float32 torch ops: what they compute, not how."""

    def rotary_gemm(x, weight_t, pos, freq, rstd=None, dynamic_scheduler=True):
        acc = x.float() @ weight_t.float() * (1.0 if rstd is None else rstd[:, None])
        q, k, v = split_qkv(acc, n_heads, n_kv_heads)
        q, k = apply_rope_reference(q, k, pos, THETA)
        return {"D": torch.cat([q, k, v], dim=1).flatten(1).to(x.dtype)}

    def stream_grad(a, b, c, y, corr, out, dynamic_scheduler=True):
        out["D"].copy_(a.float() @ b.float() + c.float() + y.float() * corr[:, None])
        return out

    def frequencies(inv_freq: torch.Tensor, rotary_n: int, nonrotary_n: int) -> torch.Tensor:
        return torch.zeros(rotary_n + nonrotary_n)

    plain = projected_rotary_qkv._QuackGEMMs(rotary_gemm, frequencies, None)
    return plain, projected_rotary_qkv._NormedGEMMs(rotary_gemm, stream_grad)


@pytest.mark.skipif(not interpreting(), reason="runs the Triton attention on CPU tensors: needs TRITON_INTERPRET=1")
def test_normed_backward_against_reference_with_stand_in_gemms(monkeypatch: pytest.MonkeyPatch) -> None:
    """The normed path's own math (rstd scaling, the kernels' dots, the stream's correction, the folded weight's
    gradients) with quack's GEMMs replaced by torch stand-ins, so CI checks it without a GPU."""
    torch.manual_seed(int(torch.randint(0, 2**31, ())))
    doc_lengths, n_heads, n_kv_heads, width, eps = [5, 1, 26], 4, 2, 64, 1e-5
    plain, normed = _stand_in_gemms(n_heads, n_kv_heads)
    monkeypatch.setattr(projected_rotary_qkv, "_quack_gemms", lambda: (plain, None))
    monkeypatch.setattr(projected_rotary_qkv, "_normed_gemms", lambda: (normed, None))
    monkeypatch.setattr(projected_rotary_qkv, "_frequencies", lambda *args: torch.zeros(1))
    stream = (3 * torch.randn(sum(doc_lengths), width)).bfloat16().requires_grad_()
    norm_weight = (1 + 0.1 * torch.randn(width)).requires_grad_()
    weight = (torch.randn((n_heads + 2 * n_kv_heads) * 64, width) / 8).bfloat16().requires_grad_()
    rstd = torch.rsqrt(stream.detach().float().square().mean(-1) + eps)
    out, handed_back = normed_projected_rotary_qkv_attention(
        stream, rstd, norm_weight, weight, _positions(doc_lengths, "cpu"), _offsets(doc_lengths, "cpu"),
        max(doc_lengths), n_heads=n_heads, n_kv_heads=n_kv_heads,
    )
    _assert_normed_matches_reference(out, handed_back, (stream, norm_weight, weight), eps, doc_lengths, n_heads,
                                     n_kv_heads)


@ON_QUACK
@REFERENCE_SHAPES
@AUTOCAST
def test_normed_matches_reference(doc_lengths: list[int], width: int, heads: tuple[int, int], head_dim: int,
                                  autocast: bool) -> None:
    """rmsnorm(stream) * norm_weight projected and attended, with rstd given as the previous GEMM computes it, and the
    stream handed back; its consumer's gradient (a loss on the handed-back stream) joins the norm's."""
    torch.manual_seed(int(torch.randint(0, 2**31, ())))
    tokens, (n_heads, n_kv_heads), eps = sum(doc_lengths), heads, 1e-5
    assert normed_projected_rotary_qkv_attention_unavailable_reason(
        torch.empty(8, width, device="cuda", dtype=torch.bfloat16),
        torch.empty((n_heads + 2 * n_kv_heads) * head_dim, width, device="cuda", dtype=torch.bfloat16),
        n_heads, n_kv_heads,
    ) is None
    stream = (3 * torch.randn(tokens, width, device="cuda")).bfloat16().requires_grad_()
    norm_weight = (1 + 0.1 * torch.randn(width, device="cuda")).requires_grad_()
    weight = (torch.randn((n_heads + 2 * n_kv_heads) * head_dim, width, device="cuda") / width**0.5)
    weight = weight.to(torch.float32 if autocast else torch.bfloat16).requires_grad_()
    rstd = torch.rsqrt(stream.detach().float().square().mean(-1) + eps)
    args = (_positions(doc_lengths, "cuda"), _offsets(doc_lengths, "cuda"), max(doc_lengths))
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        out, handed_back = normed_projected_rotary_qkv_attention(
            stream, rstd, norm_weight, weight, *args, n_heads=n_heads, n_kv_heads=n_kv_heads
        )
    assert out.shape == (tokens, n_heads, head_dim) and out.dtype == torch.bfloat16
    assert torch.equal(handed_back, stream)
    _assert_normed_matches_reference(out, handed_back, (stream, norm_weight, weight), eps, doc_lengths, n_heads,
                                     n_kv_heads)
