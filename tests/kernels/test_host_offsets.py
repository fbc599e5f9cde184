"""Offsets checked on the host: the attention and SSD checks then read nothing back for that tensor (only for it,
and only for the bounds it was checked for), and wrong host offsets are a ValueError before any copy is trusted."""

import pytest
import torch

from gristmill.kernels.attention import inputs as attention_inputs
from gristmill.kernels.attention.inputs import check_cu_seqlens
from gristmill.kernels.host_offsets import trust_host_offsets
from gristmill.kernels.ssd import documents as ssd_documents
from gristmill.kernels.ssd.documents import cached_chunk_plan


class ReadBack(Exception):
    """Raised by the stand-ins for the kernels' device-side checks."""


@pytest.fixture
def no_read_back(monkeypatch: pytest.MonkeyPatch) -> None:
    def read_back(*_: object) -> None:
        raise ReadBack

    monkeypatch.setattr(attention_inputs, "_check_offset_values", read_back)
    monkeypatch.setattr(ssd_documents, "check_cu_seqlens_values", read_back)


def offsets(*values: int) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.int32)


def test_trusted_offsets_are_not_read_back(no_read_back: None) -> None:
    cu = offsets(0, 3, 7, 10)
    trust_host_offsets(cu, cu.tolist(), max_seqlen=8)
    check_cu_seqlens(cu, 10, 8, cu.device)
    plan = cached_chunk_plan(cu, 10, 4)
    assert plan.num_docs == 3
    with pytest.raises(ReadBack):  # another tensor with the same values is checked as before
        check_cu_seqlens(cu.clone(), 10, 8, cu.device)


def test_other_bounds_are_checked_again(no_read_back: None) -> None:
    cu = offsets(0, 3, 7, 10)
    trust_host_offsets(cu, cu.tolist(), max_seqlen=8)
    with pytest.raises(ReadBack):
        check_cu_seqlens(cu, 10, 6, cu.device)
    with pytest.raises(ReadBack):
        cached_chunk_plan(cu, 12, 4)


@pytest.mark.parametrize(
    "host, message",
    [
        ([1, 3], "run from 0"),
        ([0], "at least 2 entries"),
        ([0, 5, 3], "non-decreasing"),
        ([0, 9], "below the longest document"),
    ],
)
def test_wrong_host_offsets_raise(host: list[int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        trust_host_offsets(offsets(*host), host, max_seqlen=8)
