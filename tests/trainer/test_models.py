"""Packed rows behave like their documents run one by one: references, blocks and whole models."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gristmill.kernels.attention.reference import attention_reference, sdpa_attention_reference
from gristmill.kernels.ssd.conv1d_reference import causal_conv1d_reference
from gristmill.kernels.ssd.reference import ssd_chunked_reference, ssd_reference
from gristmill.trainer.models.model import IGNORE_INDEX, LanguageModel
from gristmill.trainer.models.presets import tiny_hybrid, tiny_transformer
from gristmill.trainer.models.segments import Segments
from gristmill.trainer.packing import Piece, collate
from trainer_testdata import EOS, random_documents

SEQ_LEN = 48


def random_cu_seqlens(rows: int, row_len: int, generator: torch.Generator) -> torch.Tensor:
    """Boundaries at every row end plus a few random cuts (odd and length-1 segments included)."""
    cuts = set(range(0, rows * row_len + 1, row_len))
    cuts |= set(torch.randint(1, rows * row_len, (rows * 3,), generator=generator).tolist())
    return torch.tensor(sorted(cuts), dtype=torch.int32)


def segments_of(cu: torch.Tensor) -> list[tuple[int, int]]:
    return list(zip(cu[:-1].tolist(), cu[1:].tolist()))


def test_chunked_ssd_matches_the_step_by_step_recurrence_and_resets_at_boundaries() -> None:
    g = torch.Generator().manual_seed(int(torch.randint(0, 2**31, ())))
    total, heads, head_dim, groups, state = 2 * 37, 4, 5, 2, 6
    x = torch.randn(total, heads, head_dim, generator=g)
    dt = torch.rand(total, heads, generator=g)
    A = -torch.rand(heads, generator=g) * 4
    B, C = torch.randn(2, total, groups, state, generator=g)
    D = torch.randn(heads, generator=g)
    cu = random_cu_seqlens(2, 37, g)
    chunked = ssd_chunked_reference(x, dt, A, B, C, D=D, cu_seqlens=cu, chunk_size=16)
    torch.testing.assert_close(chunked, ssd_reference(x, dt, A, B, C, D=D, cu_seqlens=cu))
    one_by_one = torch.cat(
        [
            ssd_chunked_reference(x[s:e], dt[s:e], A, B[s:e], C[s:e], D=D, chunk_size=16)
            for s, e in segments_of(cu)
        ]
    )
    torch.testing.assert_close(chunked, one_by_one)


def test_chunked_ssd_gradients_match_the_step_by_step_recurrence() -> None:
    g = torch.Generator().manual_seed(int(torch.randint(0, 2**31, ())))
    total, heads, head_dim, groups, state = 2 * 29, 4, 3, 2, 5
    leaves = {
        "x": torch.randn(total, heads, head_dim, generator=g), "dt": torch.rand(total, heads, generator=g),
        "A": -torch.rand(heads, generator=g) * 4, "B": torch.randn(total, groups, state, generator=g),
        "C": torch.randn(total, groups, state, generator=g), "D": torch.randn(heads, generator=g),
    }
    cu = random_cu_seqlens(2, 29, g)
    upstream = torch.randn(total, heads, head_dim, generator=g)

    def gradients(scan) -> list[torch.Tensor]:
        inputs = {name: t.clone().requires_grad_() for name, t in leaves.items()}
        out = scan(*(inputs[k] for k in ("x", "dt", "A", "B", "C")), D=inputs["D"], cu_seqlens=cu)
        return torch.autograd.grad(out, list(inputs.values()), upstream)

    chunked = gradients(lambda *args, **kw: ssd_chunked_reference(*args, **kw, chunk_size=16))
    for got, want in zip(chunked, gradients(ssd_reference), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_conv1d_never_reads_across_a_boundary() -> None:
    g = torch.Generator().manual_seed(int(torch.randint(0, 2**31, ())))
    x, weight, bias = torch.randn(60, 6, generator=g), torch.randn(6, 4, generator=g), torch.randn(6, generator=g)
    cu = random_cu_seqlens(3, 20, g)
    packed = causal_conv1d_reference(x, weight, bias, cu_seqlens=cu)
    full = F.silu(F.conv1d(x.t()[None], weight[:, None], bias, padding=3, groups=6)[0, :, :60].t())
    torch.testing.assert_close(causal_conv1d_reference(x, weight, bias), full)
    one_by_one = [causal_conv1d_reference(x[s:e], weight, bias) for s, e in segments_of(cu)]
    torch.testing.assert_close(packed, torch.cat(one_by_one))


def test_attention_stays_inside_each_document() -> None:
    g = torch.Generator().manual_seed(int(torch.randint(0, 2**31, ())))
    rows, row_len = 3, 16
    q = torch.randn(rows * row_len, 4, 8, generator=g)
    k, v = torch.randn(2, rows * row_len, 2, 8, generator=g)
    cu = random_cu_seqlens(rows, row_len, g)
    packed = sdpa_attention_reference(q, k, v, cu, row_len, rows=rows)

    def alone(s: int, e: int) -> torch.Tensor:
        out = F.scaled_dot_product_attention(
            q[s:e].transpose(0, 1), k[s:e].transpose(0, 1).repeat_interleave(2, 0),
            v[s:e].transpose(0, 1).repeat_interleave(2, 0), is_causal=True,
        )
        return out.transpose(0, 1)

    torch.testing.assert_close(packed, torch.cat([alone(s, e) for s, e in segments_of(cu)]))
    torch.testing.assert_close(packed, attention_reference(q, k, v, cu, row_len))  # the kernel tests' oracle
    with pytest.raises(ValueError, match="rows=5"):
        sdpa_attention_reference(q, k, v, cu, row_len, rows=5)


def single_document_inputs(document: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, Segments]:
    n = len(document)
    labels = np.append(document[1:], IGNORE_INDEX)
    segments = Segments(cu_seqlens=torch.tensor([0, n], dtype=torch.int32), position_ids=torch.arange(n),
                        max_seqlen=n, rows=1)
    return torch.from_numpy(document.astype(np.int64))[None], torch.from_numpy(labels)[None], segments


@pytest.mark.parametrize("preset", [tiny_transformer, tiny_hybrid], ids=["attention", "hybrid"])
def test_packed_loss_and_gradients_equal_the_documents_run_one_by_one(preset) -> None:
    torch.manual_seed(int(torch.randint(0, 2**31, ())))
    model = LanguageModel(preset())
    rng = np.random.default_rng()
    documents = [d for d in random_documents(rng, 12, SEQ_LEN // 2)]
    rows, row, space = [], [], SEQ_LEN
    for document in documents:
        if len(document) > space:
            rows.append(row)
            row, space = [], SEQ_LEN
        row.append(Piece(document, 0, len(document)))
        space -= len(document)
    rows.append(row)
    batch = collate(rows, SEQ_LEN, pad_id=EOS)
    assert batch.documents == len(documents) and len(batch.segments.cu_seqlens) > len(rows) + 1

    packed_loss = model(batch.input_ids, batch.labels, batch.segments)
    packed_loss.backward()
    packed_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    separate_loss = sum(model(*single_document_inputs(d)) for d in documents)
    separate_loss.backward()

    torch.testing.assert_close(packed_loss, separate_loss, rtol=1e-5, atol=1e-4)
    for (name, p), packed_grad in zip(model.named_parameters(), packed_grads):
        torch.testing.assert_close(packed_grad, p.grad, rtol=1e-4, atol=1e-5, msg=lambda m, name=name: f"{name}: {m}")


def test_residual_stream_runs_in_the_autocast_dtype() -> None:
    """Under bf16 autocast every block receives a bf16 stream, and the loss stays close to float32's."""
    torch.manual_seed(int(torch.randint(0, 2**31, ())))
    model = LanguageModel(tiny_transformer())
    seen = []
    model.layers[1].register_forward_pre_hook(lambda _module, args: seen.append(args[0].dtype))
    rng = np.random.default_rng()
    inputs = single_document_inputs(random_documents(rng, 1, SEQ_LEN)[0])
    full = model(*inputs)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = model(*inputs)
    assert seen == [torch.float32, torch.bfloat16]
    torch.testing.assert_close(mixed.float(), full, rtol=3e-2, atol=0.0)


@pytest.mark.parametrize("preset", [tiny_transformer, tiny_hybrid], ids=["attention", "hybrid"])
def test_model_traces_as_one_graph_for_torch_compile(preset) -> None:
    """No graph breaks on the PyTorch path (e.g. from reading cu_seqlens values back to check them), so
    `compile = true` and the stock baseline of bench.end_to_end compile whole blocks."""
    import torch._dynamo

    model = LanguageModel(preset())
    rng = np.random.default_rng()
    documents = random_documents(rng, 6, SEQ_LEN // 2)
    rows = [[Piece(d, 0, len(d)) for d in documents[:3]], [Piece(d, 0, len(d)) for d in documents[3:]]]
    batch = collate(rows, 2 * SEQ_LEN, pad_id=EOS)
    explanation = torch._dynamo.explain(model)(batch.input_ids, batch.labels, batch.segments)
    assert explanation.graph_break_count == 0, [r.reason for r in explanation.break_reasons]
