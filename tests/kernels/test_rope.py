"""RoPE in place on q and k against its float64 reference, with positions restarting per packed document."""

import pytest
import torch

from gristmill.kernels.fused import apply_rope, apply_rope_reference
from gristmill.kernels.testing import assert_close

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
ON_GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CASES = [
    pytest.param(torch.float32, [5, 1, 9], 4, 2, 16, 1e-5, id="f32-docs5,1,9-Hq4-Hkv2-D16"),
    pytest.param(torch.float32, [3], 3, 3, 10, 1e-5, id="f32-docs3-Hq3-Hkv3-D10"),
    pytest.param(torch.bfloat16, [4000, 1, 2191], 32, 8, 128, 1e-2, id="bf16-docs4000,1,2191-Hq32-Hkv8-D128",
                 marks=ON_GPU),
    pytest.param(torch.float32, [8192], 16, 4, 64, 1e-5, id="f32-docs8192-Hq16-Hkv4-D64", marks=ON_GPU),
]


def _positions(doc_lengths: list[int]) -> torch.Tensor:
    return torch.cat([torch.arange(n, dtype=torch.int32) for n in doc_lengths]).to(DEVICE)


@pytest.mark.parametrize("dtype, doc_lengths, n_q_heads, n_kv_heads, head_dim, tol", CASES)
def test_apply_rope(dtype, doc_lengths, n_q_heads, n_kv_heads, head_dim, tol) -> None:
    torch.manual_seed(0)
    n_tokens = sum(doc_lengths)
    positions = _positions(doc_lengths)
    q_leaf = torch.randn(n_tokens, n_q_heads, head_dim, device=DEVICE, dtype=dtype, requires_grad=True)
    k_leaf = torch.randn(n_tokens, n_kv_heads, head_dim, device=DEVICE, dtype=dtype, requires_grad=True)
    dq, dk = torch.randn_like(q_leaf), torch.randn_like(k_leaf)
    q_ref_leaf, k_ref_leaf = (t.detach().double().requires_grad_() for t in (q_leaf, k_leaf))

    q, k = q_leaf.clone(), k_leaf.clone()
    q_out, k_out = apply_rope(q, k, positions)
    assert q_out.data_ptr() == q.data_ptr() and k_out.data_ptr() == k.data_ptr(), "not in place"
    q_ref, k_ref = apply_rope_reference(q_ref_leaf, k_ref_leaf, positions.long())
    assert_close("q", q_out, q_ref, tol)
    assert_close("k", k_out, k_ref, tol)
    grads = torch.autograd.grad((q_out, k_out), (q_leaf, k_leaf), (dq, dk))
    ref_grads = torch.autograd.grad((q_ref, k_ref), (q_ref_leaf, k_ref_leaf), (dq.double(), dk.double()))
    for name, grad, ref in zip(["dq", "dk"], grads, ref_grads):
        assert_close(name, grad, ref, tol)


def test_reference_turns_adjacent_pairs_as_complex_numbers() -> None:
    """The layout pinned: pair i is columns (2i, 2i + 1), turned like the complex number x[2i] + i x[2i + 1] times
    e^(i p theta^(-2i/D))."""
    torch.manual_seed(int(torch.randint(0, 2**31, ())))
    n_tokens, head_dim, theta = 11, 16, 500.0
    positions = torch.randint(0, 3000, (n_tokens,))
    q = torch.randn(n_tokens, 3, head_dim, dtype=torch.float64)
    k = torch.randn(n_tokens, 1, head_dim, dtype=torch.float64)
    pairs = torch.arange(head_dim // 2, dtype=torch.float64)
    turn = torch.polar(torch.ones(n_tokens, head_dim // 2, dtype=torch.float64),
                       positions[:, None].double() * theta ** (-2 * pairs / head_dim))[:, None, :]
    q_rot, k_rot = apply_rope_reference(q, k, positions, theta)
    for name, rotated, x in [("q", q_rot, q), ("k", k_rot, k)]:
        expected = torch.view_as_real(torch.view_as_complex(x.view(*x.shape[:2], -1, 2)) * turn).flatten(-2)
        assert_close(name, rotated, expected, 1e-6)


def test_apply_rope_packed_equals_documents_one_by_one() -> None:
    torch.manual_seed(0)
    doc_lengths = [6, 1, 4]
    q = torch.randn(sum(doc_lengths), 2, 8, device=DEVICE)
    k = torch.randn(sum(doc_lengths), 1, 8, device=DEVICE)
    per_doc = [
        apply_rope(q_doc.clone(), k_doc.clone(), torch.arange(len(q_doc), device=DEVICE))
        for q_doc, k_doc in zip(q.split(doc_lengths), k.split(doc_lengths))
    ]
    q_packed, k_packed = apply_rope(q.clone(), k.clone(), _positions(doc_lengths))
    assert_close("q", q_packed, torch.cat([pair[0] for pair in per_doc]), 1e-6)
    assert_close("k", k_packed, torch.cat([pair[1] for pair in per_doc]), 1e-6)


def test_apply_rope_on_slices_of_fused_qkv() -> None:
    """q and k as strided slices of one projection output: rotated in place, v and its gradient untouched."""
    torch.manual_seed(0)
    n_tokens, n_q_heads, n_kv_heads, head_dim = 7, 4, 2, 12
    qkv_leaf = torch.randn(n_tokens, n_q_heads + 2 * n_kv_heads, head_dim, device=DEVICE, requires_grad=True)
    positions = _positions([3, 4])
    dqkv = torch.randn_like(qkv_leaf)

    qkv = qkv_leaf * 1.0
    apply_rope(qkv[:, :n_q_heads], qkv[:, n_q_heads : n_q_heads + n_kv_heads], positions)
    (grad,) = torch.autograd.grad(qkv, qkv_leaf, dqkv)

    ref_leaf = qkv_leaf.detach().double().requires_grad_()
    q_ref, k_ref = apply_rope_reference(
        ref_leaf[:, :n_q_heads], ref_leaf[:, n_q_heads : n_q_heads + n_kv_heads], positions
    )
    qkv_ref = torch.cat([q_ref, k_ref, ref_leaf[:, n_q_heads + n_kv_heads :]], dim=1)
    (grad_ref,) = torch.autograd.grad(qkv_ref, ref_leaf, dqkv.double())
    assert_close("qkv", qkv, qkv_ref, 1e-5)
    assert_close("dqkv", grad, grad_ref, 1e-5)


def _graph_node_names(tensor: torch.Tensor) -> set[str]:
    names, stack = set(), [tensor.grad_fn]
    while stack:
        node = stack.pop()
        if node is not None and type(node).__name__ not in names:
            names.add(type(node).__name__)
            stack.extend(next_node for next_node, _ in node.next_functions)
    return names


def test_apply_rope_on_views_of_projections_rotates_through_their_bases() -> None:
    """q = proj(x).view(T, H, D), as the model calls it: rotated in place, with no CopySlices in the graph
    (which would copy the projection's whole gradient several times in the backward)."""
    torch.manual_seed(int(torch.randint(0, 2**31, ())))
    n_tokens, n_q_heads, n_kv_heads, head_dim = 9, 4, 2, 8
    positions = _positions([4, 5])
    q_proj = torch.randn(n_tokens, n_q_heads * head_dim, device=DEVICE, requires_grad=True)
    k_proj = torch.randn(n_tokens, n_kv_heads * head_dim, device=DEVICE, requires_grad=True)
    q, k = (q_proj * 1.0).view(n_tokens, n_q_heads, head_dim), (k_proj * 1.0).view(n_tokens, n_kv_heads, head_dim)
    q_out, k_out = apply_rope(q, k, positions)
    assert q_out.data_ptr() == q.data_ptr() and k_out.data_ptr() == k.data_ptr(), "not in place"
    assert "CopySlices" not in _graph_node_names(q_out) | _graph_node_names(k_out)

    refs = [t.detach().double().requires_grad_() for t in (q_proj, k_proj)]
    q_ref, k_ref = apply_rope_reference(
        refs[0].view(n_tokens, n_q_heads, head_dim), refs[1].view(n_tokens, n_kv_heads, head_dim), positions
    )
    assert_close("q", q_out, q_ref, 1e-5)
    assert_close("k", k_out, k_ref, 1e-5)
    dq, dk = torch.randn_like(q_out), torch.randn_like(k_out)
    grads = torch.autograd.grad((q_out, k_out), (q_proj, k_proj), (dq, dk))
    ref_grads = torch.autograd.grad((q_ref, k_ref), refs, (dq.double(), dk.double()))
    for name, grad, ref in zip(["dq", "dk"], grads, ref_grads):
        assert_close(name, grad, ref, 1e-5)


def test_apply_rope_rejects_odd_head_dim() -> None:
    with pytest.raises(ValueError, match="even"):
        apply_rope(torch.randn(3, 2, 5, device=DEVICE), torch.randn(3, 1, 5, device=DEVICE), torch.arange(3))
