"""Where documents and chunks lie in a packed token stream, computed on the device without a host sync.

The SSD kernels cut every document into its own chunks (a chunk never straddles a boundary), so a
document reset is simply "the state entering a document's first chunk is its initial state". The
number of chunks depends on the document lengths; to keep the launch grid free of a device-to-host
copy we size it by an upper bound, `T // chunk_size + n_docs`, and give the spare chunks length 0.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch

from gristmill.kernels.ssd.validation import check_cu_seqlens_values
from gristmill.kernels.tensor_memo import TensorMemo

Built = TypeVar("Built")


@dataclass(frozen=True, slots=True)
class ChunkPlan:
    """Doc-aligned chunks of a packed stream; tensors live on the stream's device."""

    chunk_start: torch.Tensor
    """int32 `[num_chunks]`: first token of each chunk."""
    chunk_len: torch.Tensor
    """int32 `[num_chunks]`: tokens in each chunk, 0 for spare chunks."""
    doc_chunk_offsets: torch.Tensor
    """int32 `[n_docs + 1]`: document d owns chunks `doc_chunk_offsets[d]:doc_chunk_offsets[d + 1]`."""
    longest_first: torch.Tensor
    """int32 `[n_docs]`: the documents by falling chunk count, the order in which the output and dx walks launch
    them (a long document's walk is one program's sequential chain: started last, it would be the kernel's tail)."""
    chunk_size: int

    @property
    def num_chunks(self) -> int:
        return self.chunk_start.shape[0]

    @property
    def num_docs(self) -> int:
        return self.doc_chunk_offsets.shape[0] - 1


def whole_stream(total_tokens: int, device: torch.device) -> torch.Tensor:
    """The cu_seqlens of a stream that is one document."""
    return torch.tensor([0, total_tokens], dtype=torch.int32, device=device)


def plan_chunks(cu_seqlens: torch.Tensor, total_tokens: int, chunk_size: int) -> ChunkPlan:
    cu = cu_seqlens.long()
    n_docs = cu.shape[0] - 1
    doc_chunks = (cu[1:] - cu[:-1] + chunk_size - 1) // chunk_size
    offsets = torch.zeros(n_docs + 1, dtype=torch.long, device=cu.device)
    offsets[1:] = torch.cumsum(doc_chunks, 0)
    chunk = torch.arange(total_tokens // chunk_size + n_docs, device=cu.device)
    doc = torch.searchsorted(offsets[1:], chunk, right=True).clamp(max=n_docs - 1)
    start = cu[doc] + (chunk - offsets[doc]) * chunk_size
    length = (cu[doc + 1] - start).clamp(0, chunk_size)
    length = torch.where(chunk < offsets[-1], length, torch.zeros_like(length))
    return ChunkPlan(
        chunk_start=start.to(torch.int32),
        chunk_len=length.to(torch.int32),
        doc_chunk_offsets=offsets.to(torch.int32),
        longest_first=torch.argsort(doc_chunks, descending=True, stable=True).to(torch.int32),
        chunk_size=chunk_size,
    )


def token_doc_start(cu_seqlens: torch.Tensor, total_tokens: int) -> torch.Tensor:
    """int32 `[T]`: the first token of the document each token belongs to."""
    tokens = torch.arange(total_tokens, device=cu_seqlens.device, dtype=cu_seqlens.dtype)
    doc = torch.searchsorted(cu_seqlens, tokens, right=True) - 1
    return cu_seqlens[doc].to(torch.int32)


_LAYOUTS = TensorMemo()
"""What the SSD and conv kernels derive from the last `cu_seqlens`: every layer of a step gets the same packing,
so only the first pays the host sync of the offset check (none where the offsets' maker checked them on the host,
`mark_offsets_checked`)."""


def _layout(cu_seqlens: torch.Tensor, total_tokens: int, key: tuple[str, int], build: Callable[[], Built]) -> Built:
    """`build()` for this `cu_seqlens`, its values checked first. A traced graph or a CUDA graph capture cannot
    read values back (a capture's replays see new offsets in the same tensor, from the caller's packer, checked
    eagerly), so neither checks."""
    capturing = cu_seqlens.is_cuda and torch.cuda.is_current_stream_capturing()
    if not torch.compiler.is_compiling() and not capturing:
        _LAYOUTS.get(cu_seqlens, _checked_key(total_tokens), lambda: check_cu_seqlens_values(cu_seqlens, total_tokens))
    return _LAYOUTS.get(cu_seqlens, (*key, total_tokens), build)


def mark_offsets_checked(cu_seqlens: torch.Tensor, total_tokens: int) -> None:
    """Records cu_seqlens' values as checked for a stream of `total_tokens` (its maker checked them on the host), so
    the first layer of a batch reads nothing back (`gristmill.kernels.host_offsets`)."""
    _LAYOUTS.get(cu_seqlens, _checked_key(total_tokens), lambda: None)


def _checked_key(total_tokens: int) -> tuple[str, int]:
    """The memo key under which a cu_seqlens counts as checked for a stream of `total_tokens`."""
    return ("checked", total_tokens)


def cached_chunk_plan(cu_seqlens: torch.Tensor, total_tokens: int, chunk_size: int) -> ChunkPlan:
    """`plan_chunks` with the offsets checked, both done once per `cu_seqlens` tensor."""
    return _layout(cu_seqlens, total_tokens, ("plan", chunk_size), lambda: plan_chunks(cu_seqlens, total_tokens, chunk_size))


def cached_token_doc_start(cu_seqlens: torch.Tensor, total_tokens: int) -> torch.Tensor:
    """`token_doc_start` with the offsets checked, both done once per `cu_seqlens` tensor."""
    return _layout(cu_seqlens, total_tokens, ("doc_start", 0), lambda: token_doc_start(cu_seqlens, total_tokens))


def stream_chunk_plan(
    cu_seqlens: torch.Tensor | None, total_tokens: int, chunk_size: int, device: torch.device
) -> ChunkPlan:
    """The SSD kernels' chunks of a stream whose offsets were checked for shape (None: one document)."""
    if cu_seqlens is None:
        return plan_chunks(whole_stream(total_tokens, device), total_tokens, chunk_size)
    return cached_chunk_plan(cu_seqlens, total_tokens, chunk_size)


def stream_doc_start(cu_seqlens: torch.Tensor | None, total_tokens: int, device: torch.device) -> torch.Tensor:
    """The conv kernels' view of a stream's boundaries, each token's document start (None: one document)."""
    if cu_seqlens is None:
        return token_doc_start(whole_stream(total_tokens, device), total_tokens)
    return cached_token_doc_start(cu_seqlens, total_tokens)
