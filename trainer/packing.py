"""Packs documents into rows of seq_len tokens with document boundaries (cu_seqlens) and restarting positions.

Two modes. `concat` cuts one running stream of documents into rows: no padding, documents split across row
ends. `best_fit` reads a buffer of documents, cuts those longer than a row into row-sized pieces, and places
pieces longest first into the fullest row that still fits them (best-fit decreasing); the rest of a row is
padding. Its rows leave in a seeded random order: in packing order a buffer's first rows would all be pieces of
its longest documents and its last rows full of short ones, so consecutive batches would differ in kind. Either way a piece's labels are the document's next tokens, so a split document loses attention
context across the cut but no training target; a document's last token (EOS) has no target.

Packers are resumable: `state_dict()` after a row names the document source's position and the place inside
the current document (concat) or buffer (best-fit), and `load_state_dict` rebuilds exactly the same rows.
"""

import bisect
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
import torch

from gristmill.trainer.models.model import IGNORE_INDEX
from gristmill.trainer.models.segments import Segments


class DocumentSource(Protocol):
    """A resumable stream of documents (token arrays ending in EOS); a finite one raises StopIteration."""

    def next_document(self) -> np.ndarray: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class Piece:
    """Tokens [start, end) of one document, placed as one segment of a row."""

    document: np.ndarray
    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start


Row = list[Piece]


class Packer(ABC):
    def __init__(self, documents: DocumentSource, seq_len: int) -> None:
        if seq_len < 2:
            raise ValueError(f"seq_len must be at least 2, got {seq_len}")
        self.documents = documents
        self.seq_len = seq_len

    @abstractmethod
    def next_row(self) -> Row:
        """The next row's pieces (total length <= seq_len); StopIteration once a finite source is used up."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]: ...

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def _next_nonempty(self) -> np.ndarray:
        while True:
            document = self.documents.next_document()
            if len(document):
                return document


class ConcatPacker(Packer):
    """Fills every row to the last token; only the final row of a finite source is padded."""

    def __init__(self, documents: DocumentSource, seq_len: int) -> None:
        super().__init__(documents, seq_len)
        self._document: np.ndarray | None = None
        self._offset = 0
        self._source_before_document: dict[str, Any] = documents.state_dict()
        self._resume_offset = 0

    def next_row(self) -> Row:
        row: Row = []
        space = self.seq_len
        while space:
            if self._document is None:
                state = self.documents.state_dict()
                try:
                    self._document = self._next_nonempty()
                except StopIteration:
                    if row:
                        return row
                    raise
                self._source_before_document = state
                self._offset, self._resume_offset = self._resume_offset, 0
            take = min(space, len(self._document) - self._offset)
            row.append(Piece(self._document, self._offset, self._offset + take))
            self._offset += take
            space -= take
            if self._offset == len(self._document):
                self._document = None
        return row

    def state_dict(self) -> dict[str, Any]:
        if self._document is None:
            return {"source": self.documents.state_dict(), "offset": 0}
        return {"source": self._source_before_document, "offset": self._offset}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.documents.load_state_dict(state["source"])
        self._document = None
        self._resume_offset = state["offset"]


class BestFitPacker(Packer):
    """Best-fit decreasing over a buffer of `buffer_documents` documents at a time; each buffer's rows are
    shuffled with a generator seeded by (`seed`, the buffer's index), so a resumed packer shuffles alike."""

    def __init__(self, documents: DocumentSource, seq_len: int, buffer_documents: int, seed: int = 0) -> None:
        super().__init__(documents, seq_len)
        if buffer_documents < 1:
            raise ValueError(f"best_fit_buffer must be at least 1, got {buffer_documents}")
        self.buffer_documents, self.seed = buffer_documents, seed
        self._rows: list[Row] = []
        self._emitted = 0
        self._rounds = 0
        """Buffers packed so far, the one being emitted included."""
        self._source_before_round: dict[str, Any] = documents.state_dict()

    def next_row(self) -> Row:
        if self._emitted == len(self._rows):
            self._source_before_round = self.documents.state_dict()
            self._rows, self._emitted = self._shuffled_round(), 0
            if not self._rows:
                raise StopIteration
        row = self._rows[self._emitted]
        self._emitted += 1
        return row

    def _shuffled_round(self) -> list[Row]:
        rows = self._pack_round()
        order = np.random.default_rng((self.seed, self._rounds)).permutation(len(rows))
        self._rounds += 1
        return [rows[i] for i in order]

    def _pack_round(self) -> list[Row]:
        pieces: list[Piece] = []
        for _ in range(self.buffer_documents):
            try:
                document = self._next_nonempty()
            except StopIteration:
                break
            pieces += [
                Piece(document, start, min(start + self.seq_len, len(document)))
                for start in range(0, len(document), self.seq_len)
            ]
        pieces.sort(key=lambda piece: -piece.length)
        rows: list[Row] = []
        free: list[tuple[int, int]] = []  # (space left, row index), sorted: the first that fits is the fullest
        for piece in pieces:
            slot = bisect.bisect_left(free, (piece.length, -1))
            if slot == len(free):
                rows.append([piece])
                space, index = self.seq_len - piece.length, len(rows) - 1
            else:
                space, index = free.pop(slot)
                rows[index].append(piece)
                space -= piece.length
            if space:
                bisect.insort(free, (space, index))
        return rows

    def state_dict(self) -> dict[str, Any]:
        if self._emitted == len(self._rows):
            return {"source": self.documents.state_dict(), "emitted": 0, "rounds": self._rounds}
        return {"source": self._source_before_round, "emitted": self._emitted, "rounds": self._rounds - 1}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.documents.load_state_dict(state["source"])
        self._rows, self._emitted = [], 0
        self._rounds = state.get("rounds", 0)  # absent in checkpoints from before rows were shuffled
        if state["emitted"]:
            self._source_before_round = state["source"]
            self._rows, self._emitted = self._shuffled_round(), state["emitted"]


@dataclass
class PackedBatch:
    """B rows of seq_len tokens and what the model and the metrics need to know about them."""

    input_ids: torch.Tensor  # [B, L] int64
    labels: torch.Tensor  # [B, L] int64, IGNORE_INDEX where there is no target
    segments: Segments
    real_tokens: int  # tokens that are not padding
    target_tokens: int  # labels that are not IGNORE_INDEX
    documents: int  # documents that start in this batch
    split_documents: int  # ... of which are cut into more than one piece
    attended_pairs: int  # causal (query, key) pairs inside documents: the attention work worth counting

    def to(self, device: torch.device) -> "PackedBatch":
        return replace(
            self,
            input_ids=self.input_ids.to(device, non_blocking=True),
            labels=self.labels.to(device, non_blocking=True),
            segments=self.segments.to(device),
        )

    def pin_memory(self) -> "PackedBatch":
        """Called by DataLoader(pin_memory=True) so host-to-device copies can overlap compute."""
        return replace(
            self,
            input_ids=self.input_ids.pin_memory(),
            labels=self.labels.pin_memory(),
            segments=self.segments.pin_memory(),
        )


def collate(rows: list[Row], seq_len: int, pad_id: int) -> PackedBatch:
    """Lays rows out as tensors; padding at a row's end is one segment of its own with no targets."""
    inputs = np.full((len(rows), seq_len), pad_id, dtype=np.int64)
    labels = np.full((len(rows), seq_len), IGNORE_INDEX, dtype=np.int64)
    lengths: list[int] = []
    documents = split_documents = 0
    for r, row in enumerate(rows):
        column = 0
        for piece in row:
            inputs[r, column : column + piece.length] = piece.document[piece.start : piece.end]
            targets = piece.document[piece.start + 1 : piece.end + 1]
            labels[r, column : column + len(targets)] = targets
            lengths.append(piece.length)
            column += piece.length
            if piece.start == 0:
                documents += 1
                split_documents += piece.end < len(piece.document)
        if column < seq_len:
            lengths.append(seq_len - column)
    cu_seqlens = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=cu_seqlens[1:])
    position_ids = np.arange(len(rows) * seq_len) - np.repeat(cu_seqlens[:-1], lengths)
    return PackedBatch(
        input_ids=torch.from_numpy(inputs),
        labels=torch.from_numpy(labels),
        segments=Segments(
            cu_seqlens=torch.from_numpy(cu_seqlens),
            position_ids=torch.from_numpy(position_ids),
            max_seqlen=max(lengths),
            rows=len(rows),
        ),
        real_tokens=sum(piece.length for row in rows for piece in row),
        target_tokens=int((labels != IGNORE_INDEX).sum()),
        documents=documents,
        split_documents=split_documents,
        attended_pairs=sum(piece.length * (piece.length + 1) // 2 for row in rows for piece in row),
    )
