"""Where documents and chunks lie in a packed token stream, computed on the device without a host sync.

The SSD kernels cut every document into its own chunks (a chunk never straddles a boundary), so a
document reset is simply "the state entering a document's first chunk is its initial state". The
number of chunks depends on the document lengths; to keep the launch grid free of a device-to-host
copy we size it by an upper bound, `T // chunk_size + n_docs`, and give the spare chunks length 0.
"""

from dataclasses import dataclass

import torch


@dataclass(frozen=True, slots=True)
class ChunkPlan:
    """Doc-aligned chunks of a packed stream; tensors live on the stream's device."""

    chunk_start: torch.Tensor
    """int32 `[num_chunks]`: first token of each chunk."""
    chunk_len: torch.Tensor
    """int32 `[num_chunks]`: tokens in each chunk, 0 for spare chunks."""
    doc_chunk_offsets: torch.Tensor
    """int32 `[n_docs + 1]`: document d owns chunks `doc_chunk_offsets[d]:doc_chunk_offsets[d + 1]`."""
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
        chunk_size=chunk_size,
    )


def token_doc_start(cu_seqlens: torch.Tensor, total_tokens: int) -> torch.Tensor:
    """int32 `[T]`: the first token of the document each token belongs to."""
    tokens = torch.arange(total_tokens, device=cu_seqlens.device, dtype=cu_seqlens.dtype)
    doc = torch.searchsorted(cu_seqlens, tokens, right=True) - 1
    return cu_seqlens[doc].to(torch.int32)
