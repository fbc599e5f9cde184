"""rotary_qkv_attention (RoPE in place + attention from one fused qkv) against RoPE and attention references."""

from dataclasses import dataclass

import pytest
import torch

from gristmill.kernels.attention import attention_reference
from gristmill.kernels.attention.inputs import resolve_softmax_scale
from gristmill.kernels.attention.rotary_qkv import (
    attend_rotated_qkv,
    rope_tables,
    rotary_qkv_attention,
    rotary_qkv_attention_reference,
    rotated_qkv_attention_grad,
    split_qkv,
)
from gristmill.kernels.fused import apply_rope_reference
from gristmill.kernels.testing import assert_close

ON_GPU = torch.cuda.is_available()
DEVICE = "cuda" if ON_GPU else "cpu"
# bf16 dq and dk sit about 1.05e-2 from the fp32 reference (q and k round once after RoPE, the gradients once
# at their store, rotated back in fp32 before it), the same as RoPE and flash_attention_varlen one after the other.
TOLERANCE = {torch.bfloat16: 1.5e-2, torch.float16: 2e-3}

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # padding rows of a tile, in the interpreter


@dataclass(frozen=True)
class Case:
    doc_lengths: tuple[int, ...]
    heads_q: int
    heads_kv: int
    head_dim: int
    dtype: torch.dtype
    extra_columns: int = 0
    """qkv as the first columns of a wider buffer: a row stride larger than its width."""

    def __str__(self) -> str:
        dtype = str(self.dtype).removeprefix("torch.")
        stride = f"-stride+{self.extra_columns}" if self.extra_columns else ""
        return f"docs{'_'.join(map(str, self.doc_lengths))}-H{self.heads_q}x{self.heads_kv}-D{self.head_dim}-{dtype}{stride}"

    @property
    def width(self) -> int:
        return (self.heads_q + 2 * self.heads_kv) * self.head_dim


CPU_CASES = [
    Case((1, 40, 0, 23), 4, 1, 64, torch.bfloat16),
    Case((37, 1, 58), 2, 2, 64, torch.float16, extra_columns=64),
    Case((70,), 2, 1, 128, torch.bfloat16),
]
GPU_CASES = [
    Case((1, 700, 1, 3000, 129, 1, 4361), 16, 4, 64, torch.bfloat16),
    Case((2048, 1, 1000, 1047), 8, 2, 128, torch.bfloat16, extra_columns=128),
]
CASES = CPU_CASES + (GPU_CASES if ON_GPU else [])


def offsets(doc_lengths: tuple[int, ...]) -> torch.Tensor:
    return torch.tensor([0, *torch.tensor(doc_lengths).cumsum(0).tolist()], dtype=torch.int32, device=DEVICE)


def positions(doc_lengths: tuple[int, ...]) -> torch.Tensor:
    return torch.cat([torch.arange(n, dtype=torch.int32) for n in doc_lengths]).to(DEVICE)


def make_qkv(case: Case) -> torch.Tensor:
    """A leaf holding qkv's values, possibly in the first columns of a wider buffer."""
    total = sum(case.doc_lengths)
    wide = torch.randn(total, case.width + case.extra_columns, device=DEVICE, dtype=case.dtype)
    return wide[:, : case.width].detach().requires_grad_()


def assert_qkv_grads_close(case: Case, got: torch.Tensor, expected: torch.Tensor) -> None:
    """dq, dk and dv each on its own: they come from different kernels (dk and dv from one, rotated apart), and a
    wrong dk is a small share of the whole of dqkv."""
    for name, got_part, expected_part in zip(
        ("dq", "dk", "dv"), split_qkv(got, case.heads_q, case.heads_kv), split_qkv(expected, case.heads_q, case.heads_kv)
    ):
        assert_close(name, got_part, expected_part, TOLERANCE[case.dtype])


def reference(case: Case, qkv: torch.Tensor, cu_seqlens: torch.Tensor) -> torch.Tensor:
    """RoPE then attention, in fp32, one document at a time."""
    q, k, v = split_qkv(qkv, case.heads_q, case.heads_kv)
    q, k = apply_rope_reference(q, k, positions(case.doc_lengths))
    return attention_reference(q, k, v, cu_seqlens, max(case.doc_lengths))


@pytest.mark.parametrize("case", CASES, ids=str)
def test_rotary_qkv_attention(case: Case) -> None:
    torch.manual_seed(int(torch.randint(0, 2**31, ())))
    cu_seqlens = offsets(case.doc_lengths)
    leaf = make_qkv(case)
    out = rotary_qkv_attention(
        leaf * 1, positions(case.doc_lengths), cu_seqlens, max(case.doc_lengths),
        n_heads=case.heads_q, n_kv_heads=case.heads_kv,
    )
    grad_out = torch.randn_like(out)
    out.backward(grad_out)

    ref_leaf = leaf.detach().float().requires_grad_()
    ref = reference(case, ref_leaf, cu_seqlens)
    ref.backward(grad_out.float())
    assert_close("out", out, ref, TOLERANCE[case.dtype])
    assert_qkv_grads_close(case, leaf.grad, ref_leaf.grad)


def test_packed_row_equals_documents_one_by_one() -> None:
    """Each document alone (positions from 0, no neighbours) gives the packed row's output and gradient rows."""
    case = CPU_CASES[0]
    cu_seqlens = offsets(case.doc_lengths)
    torch.manual_seed(int(torch.randint(0, 2**31, ())))
    leaf = make_qkv(case)
    grad_out = torch.randn(sum(case.doc_lengths), case.heads_q, case.head_dim, device=DEVICE, dtype=case.dtype)
    settings = dict(n_heads=case.heads_q, n_kv_heads=case.heads_kv)
    packed = rotary_qkv_attention(leaf * 1, positions(case.doc_lengths), cu_seqlens, max(case.doc_lengths), **settings)
    (packed_grad,) = torch.autograd.grad(packed, leaf, grad_out)
    for start, end in zip(cu_seqlens[:-1].tolist(), cu_seqlens[1:].tolist()):
        if start == end:
            continue
        doc_leaf = leaf[start:end].detach().requires_grad_()
        alone = rotary_qkv_attention(
            doc_leaf * 1, positions((end - start,)), offsets((end - start,)), end - start, **settings
        )
        (alone_grad,) = torch.autograd.grad(alone, doc_leaf, grad_out[start:end])
        assert_close(f"out {start}:{end}", packed[start:end], alone, 1e-3)
        assert_close(f"dqkv {start}:{end}", packed_grad[start:end], alone_grad, 1e-3)


@pytest.mark.parametrize("attention_used", [True, False], ids=["with-attention", "qkv-only"])
def test_rotated_qkv_used_afterwards_gets_its_gradient(attention_used: bool) -> None:
    """qkv comes out rotated in place; a caller that reads it afterwards must see the rotated values, and its
    gradient must reach the projection output (unrotated) together with attention's, or alone when the attention
    output gets no gradient."""
    case = CPU_CASES[1]
    cu_seqlens = offsets(case.doc_lengths)
    torch.manual_seed(int(torch.randint(0, 2**31, ())))
    leaf = make_qkv(case)
    qkv = leaf * 1
    out = rotary_qkv_attention(
        qkv, positions(case.doc_lengths), cu_seqlens, max(case.doc_lengths), n_heads=case.heads_q, n_kv_heads=case.heads_kv
    )
    attention_loss = out.float().square().sum() if attention_used else 0  # unused: its gradient reaches us as None
    (attention_loss + qkv.float().sum()).backward()

    ref_leaf = leaf.detach().float().requires_grad_()
    q, k, v = split_qkv(ref_leaf, case.heads_q, case.heads_kv)
    q, k = apply_rope_reference(q, k, positions(case.doc_lengths))
    ref = attention_reference(q, k, v, cu_seqlens, max(case.doc_lengths))
    (ref.square().sum() * attention_used + q.sum() + k.sum() + v.sum()).backward()
    assert_close("rotated qkv", qkv, torch.cat([q, k, v], dim=1).flatten(1), TOLERANCE[case.dtype])
    assert_qkv_grads_close(case, leaf.grad, ref_leaf.grad)


@pytest.mark.parametrize("case", [CPU_CASES[0], CPU_CASES[2]] + GPU_CASES[:1] * ON_GPU, ids=str)
def test_row_scaled_gradients_and_their_dots(case: Case) -> None:
    """For a qkv whose projection scaled each row by a norm's rstd: the gradients come out times rstd and each head
    hands back its per-token <d(x), x> of what attention saw (RoPE keeps the dot), which sum to <dqkv, qkv> before
    RoPE, the rstd gradient's share of that row."""
    torch.manual_seed(int(torch.randint(0, 2**31, ())))
    cu_seqlens, position_ids = offsets(case.doc_lengths), positions(case.doc_lengths)
    total, heads = sum(case.doc_lengths), case.heads_q + case.heads_kv
    before_rope = make_qkv(case).detach()
    q, k, v = split_qkv(before_rope, case.heads_q, case.heads_kv)
    q, k = apply_rope_reference(q, k, position_ids)
    rotated = torch.cat([q, k, v], dim=1).flatten(1).to(case.dtype)
    cos, sin = rope_tables(position_ids, case.head_dim, 10000.0)
    scale = resolve_softmax_scale(case.head_dim, None)
    settings = (max(case.doc_lengths), case.heads_q, case.heads_kv, scale)
    out, lse, doc_order = attend_rotated_qkv(rotated, cu_seqlens, settings[0], case.heads_q, case.heads_kv, scale)
    grad_out = torch.randn_like(out)
    plain = rotated_qkv_attention_grad(grad_out, rotated, out, lse, cu_seqlens, doc_order, cos, sin, settings)
    rstd = torch.rand(total, device=DEVICE) + 0.5
    dots = torch.full((heads, total), float("nan"), device=DEVICE)
    scaled = rotated_qkv_attention_grad(
        grad_out, rotated, out, lse, cu_seqlens, doc_order, cos, sin, settings, row_scale=(rstd, dots)
    )
    assert_qkv_grads_close(case, scaled, (plain.float() * rstd[:, None]).to(case.dtype))
    per_head = (plain.float() * before_rope.float()).view(total, heads + case.heads_kv, case.head_dim).sum(-1)
    expected = torch.cat([per_head[:, : case.heads_q], per_head[:, case.heads_q : heads] + per_head[:, heads:]], 1)
    assert_close("dots", dots, expected.T, TOLERANCE[case.dtype])


def test_reference_path_matches_the_oracle() -> None:
    """The trainer's CPU path (SDPA over rows) against the per-document fp32 oracle; two rows of 48 tokens."""
    case = Case((10, 38, 48), 4, 2, 16, torch.float32)
    cu_seqlens = offsets(case.doc_lengths)
    qkv = make_qkv(case).detach()
    got = rotary_qkv_attention_reference(
        qkv, positions(case.doc_lengths), cu_seqlens, 48, n_heads=4, n_kv_heads=2, rows=2
    )
    assert_close("out", got, reference(case, qkv, cu_seqlens), 1e-5)


@pytest.mark.parametrize(
    "width, heads, position_count, message",
    [
        (8 * 64 + 4, (4, 2), 10, r"qkv must be \[T, \(n_heads \+ 2 \* n_kv_heads\) \* head_dim\]"),
        (7 * 64, (3, 2), 10, r"kv heads \(2\) must divide q heads \(3\)"),
        (8 * 64, (4, 2), 9, r"position_ids \(9,\)"),
        (8 * 64, (0, 2), 10, r"n_heads \(0\) and n_kv_heads \(2\) must be positive"),
    ],
    ids=["width", "gqa", "positions", "heads"],
)
def test_bad_arguments_name_the_value(width: int, heads: tuple[int, int], position_count: int, message: str) -> None:
    qkv = torch.randn(10, width, device=DEVICE, dtype=torch.bfloat16)
    cu_seqlens = offsets((10,))
    with pytest.raises(ValueError, match=message):
        rotary_qkv_attention(
            qkv, torch.arange(position_count, device=DEVICE), cu_seqlens, 10, n_heads=heads[0], n_kv_heads=heads[1]
        )


def test_tables_follow_in_place_edits_of_the_offsets() -> None:
    """RoPE tables and the document order are kept per position_ids / cu_seqlens tensor: refilling those tensors
    in place (as a graphed trainer does every step) must give the new packing's output, not the cached one."""
    first, second = Case((30, 20), 2, 1, 64, torch.bfloat16), Case((20, 30), 2, 1, 64, torch.bfloat16)
    torch.manual_seed(int(torch.randint(0, 2**31, ())))
    leaf = make_qkv(first)
    cu_seqlens, position_ids = offsets(first.doc_lengths), positions(first.doc_lengths)
    settings = dict(n_heads=first.heads_q, n_kv_heads=first.heads_kv)
    for case in (first, first, second):
        cu_seqlens.copy_(offsets(case.doc_lengths))
        position_ids.copy_(positions(case.doc_lengths))
        out = rotary_qkv_attention(leaf * 1, position_ids, cu_seqlens, 30, **settings)
        assert_close(str(case), out, reference(case, leaf.detach().float(), offsets(case.doc_lengths)), 1.5e-2)
