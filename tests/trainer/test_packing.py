"""The packer: every token exactly once, boundaries where documents are, labels and positions per segment."""

from collections import Counter

import numpy as np
import pytest
import torch

from gristmill.trainer.models.model import IGNORE_INDEX
from gristmill.trainer.packing import BestFitPacker, ConcatPacker, PackedBatch, Packer, collate
from trainer_testdata import EOS, ListSource, random_documents

SEQ_LEN = 32


def make_packer(mode: str, documents: list[np.ndarray]) -> Packer:
    source = ListSource(documents)
    return ConcatPacker(source, SEQ_LEN) if mode == "concat" else BestFitPacker(source, SEQ_LEN, buffer_documents=16)


def pack_all(packer: Packer, rows_per_batch: int = 3) -> list[PackedBatch]:
    batches, rows = [], []
    while True:
        try:
            rows.append(packer.next_row())
        except StopIteration:
            break
        if len(rows) == rows_per_batch:
            batches.append(collate(rows, SEQ_LEN, pad_id=EOS))
            rows = []
    if rows:
        batches.append(collate(rows, SEQ_LEN, pad_id=EOS))
    return batches


def unique_documents(rng: np.random.Generator, count: int) -> list[np.ndarray]:
    """Documents whose tokens are all distinct across the set, so each token names its document and place."""
    lengths = rng.integers(1, 3 * SEQ_LEN, count)
    tokens = rng.permutation(int(lengths.sum())) + 1
    return list(np.split(tokens, np.cumsum(lengths)[:-1]))


@pytest.mark.parametrize("mode", ["concat", "best_fit"])
def test_every_token_once_with_its_next_token_as_label(mode: str) -> None:
    rng = np.random.default_rng()
    documents = unique_documents(rng, 60)
    next_token = {
        int(d[i]): (int(d[i + 1]) if i + 1 < len(d) else IGNORE_INDEX) for d in documents for i in range(len(d))
    }
    batches = pack_all(make_packer(mode, documents))
    seen: Counter[int] = Counter()
    for batch in batches:
        real = batch.input_ids != EOS
        seen.update(batch.input_ids[real].tolist())
        for token, label in zip(batch.input_ids[real].tolist(), batch.labels[real].tolist()):
            assert label == next_token[token]
        assert (batch.labels[~real] == IGNORE_INDEX).all()
    assert seen == Counter(next_token.keys())


@pytest.mark.parametrize("mode", ["concat", "best_fit"])
def test_boundaries_and_positions_follow_documents(mode: str) -> None:
    rng = np.random.default_rng()
    documents = unique_documents(rng, 40)
    document_of = {int(t): (k, i) for k, d in enumerate(documents) for i, t in enumerate(d)}
    for batch in pack_all(make_packer(mode, documents)):
        cu = batch.segments.cu_seqlens
        total = batch.input_ids.numel()
        assert cu.dtype == torch.int32 and cu[0] == 0 and cu[-1] == total
        assert (torch.diff(cu) > 0).all()
        assert set(range(0, total + 1, SEQ_LEN)) <= set(cu.tolist()), "every row end is a boundary"
        assert batch.segments.max_seqlen == int(torch.diff(cu).max())
        flat = batch.input_ids.reshape(-1).tolist()
        positions = batch.segments.position_ids.tolist()
        for start, end in zip(cu[:-1].tolist(), cu[1:].tolist()):
            assert positions[start:end] == list(range(end - start))
            owners = {document_of[t][0] for t in flat[start:end] if t != EOS}
            assert len(owners) <= 1, "a segment holds one document (or padding)"
            places = [document_of[t][1] for t in flat[start:end] if t != EOS]
            if places:
                assert places == list(range(places[0], places[0] + len(places))), "in document order"


def test_concat_has_no_padding_but_the_last_row() -> None:
    documents = random_documents(np.random.default_rng(), 50, 3 * SEQ_LEN)
    batches = pack_all(make_packer("concat", documents), rows_per_batch=1)
    assert all(b.real_tokens == SEQ_LEN for b in batches[:-1])
    assert sum(b.real_tokens for b in batches) == sum(len(d) for d in documents)


def test_best_fit_pads_little_and_splits_only_long_documents() -> None:
    rng = np.random.default_rng()
    documents = [np.append(rng.integers(1, 200, n - 1), EOS) for n in rng.integers(1, SEQ_LEN // 2, 200)]
    documents += [np.append(rng.integers(1, 200, 2 * SEQ_LEN), EOS)]
    batches = pack_all(BestFitPacker(ListSource(documents), SEQ_LEN, buffer_documents=256))
    real = sum(b.real_tokens for b in batches)
    slots = sum(b.input_ids.numel() for b in batches)
    assert real / slots > 0.97
    assert sum(b.split_documents for b in batches) == 1
    assert sum(b.documents for b in batches) == len(documents)


@pytest.mark.parametrize("mode", ["concat", "best_fit"])
def test_resume_from_state_rebuilds_the_same_rows(mode: str) -> None:
    documents = random_documents(np.random.default_rng(), 80, 3 * SEQ_LEN)
    packer = make_packer(mode, documents)
    for _ in range(7):
        packer.next_row()
    state = packer.state_dict()
    expected = pack_all(packer)
    resumed = make_packer(mode, documents)
    resumed.load_state_dict(state)
    got = pack_all(resumed)
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.segments.cu_seqlens, b.segments.cu_seqlens)


def test_best_fit_rows_leave_in_seeded_random_order() -> None:
    """In packing order a buffer's first half holds only single pieces of its long documents and its second
    half the rows of several short ones; shuffled, both halves mix, and the seed fixes the order."""
    rng = np.random.default_rng()
    documents = [np.append(rng.integers(1, 200, n - 1), EOS) for n in rng.integers(1, 4 * SEQ_LEN, 120)]

    def rows(seed: int) -> list[tuple[tuple[int, ...], ...]]:
        packer = BestFitPacker(ListSource(documents), SEQ_LEN, buffer_documents=len(documents), seed=seed)
        out = []
        while True:
            try:
                row = packer.next_row()
            except StopIteration:
                return out
            out.append(tuple(tuple(piece.document[piece.start : piece.end]) for piece in row))

    first, again, other = rows(0), rows(0), rows(1)
    assert first == again
    assert sorted(first) == sorted(other) and first != other
    assert any(len(row) > 1 for row in first[: len(first) // 2]), "rows still in packing order"


def test_moving_a_batch_marks_its_offsets_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """The offsets are checked on the host as the batch moves, so the attention kernels read nothing back."""
    from gristmill.kernels.attention import inputs as attention_inputs

    batch = pack_all(make_packer("best_fit", random_documents(np.random.default_rng(0), 12, SEQ_LEN)))[0]

    def read_back(*_: object) -> None:
        raise AssertionError("the offsets were read back from the device")

    monkeypatch.setattr(attention_inputs, "_check_offset_values", read_back)
    moved = batch.to(torch.device("cpu"))
    segments = moved.segments
    attention_inputs.check_cu_seqlens(segments.cu_seqlens, moved.input_ids.numel(), segments.max_seqlen,
                                      segments.cu_seqlens.device)
