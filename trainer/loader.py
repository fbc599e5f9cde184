"""Packed batches for one rank, cut from one global stream of packed rows that no rank count changes.

Every rank (and every loader worker of a rank) runs the same packing plan over all training documents:
packing needs only document lengths, and documents are memory-mapped views, so a row that belongs to
another rank costs a few list operations and no reads. The stream is dealt out in slots of `rows` rows:
slot g goes to rank g % ranks, so rank r's b-th micro-batch holds global rows [(b*W + r)*R, (b*W + r + 1)*R)
(W ranks, R rows). The ranks' shares are disjoint and leave no gap, and a step of A micro-batches per rank
consumes exactly the next A*W*R rows. The loader state at a step boundary is therefore one global
position, the same on every rank: rows consumed and the packer state there. A run resumed under any number
of ranks, workers or rows per micro-batch continues from that row; with the same global batch it trains on
the very rows the uninterrupted run would have.

Loader worker w of a rank makes that rank's micro-batches w, w + workers, ...; for each it runs the plan on
to the end of its slot round, so the packer state it hands back is the one at the global position reached
once every rank has taken that micro-batch.
"""

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from gristmill.tokenizer.shard_format import TokenDataset
from gristmill.trainer.config import DataConfig
from gristmill.trainer.data import DocumentStream
from gristmill.trainer.packing import BestFitPacker, ConcatPacker, PackedBatch, Packer, Row, collate

Split = Literal["train", "validation"]


@dataclass(frozen=True)
class DatasetSummary:
    """What the model and the packer must agree on with the token datasets."""

    vocab_size: int
    eos_id: int
    pad_id: int
    train_documents: int
    validation_documents: int


def check_datasets(cfg: DataConfig, model_vocab_size: int) -> DatasetSummary:
    """Opens every manifest and checks it against the config and the model, before any GPU work."""
    if not cfg.manifests:
        raise ValueError("data.manifests is empty: name at least one token dataset directory")
    datasets = []
    for path in cfg.manifests:
        if not (Path(path) / "manifest.json").is_file():
            raise FileNotFoundError(f"data.manifests: {path} has no manifest.json (not a token dataset)")
        datasets.append(TokenDataset(path, tokenizer_sha256=cfg.tokenizer_sha256))
    first = datasets[0]
    for path, dataset in zip(cfg.manifests[1:], datasets[1:]):
        if (dataset.tokenizer_sha256, dataset.eos_id) != (first.tokenizer_sha256, first.eos_id):
            raise ValueError(
                f"data.manifests: {path} was tokenized with tokenizer {dataset.tokenizer_sha256} (eos "
                f"{dataset.eos_id}), {cfg.manifests[0]} with {first.tokenizer_sha256} (eos {first.eos_id}); "
                "mixed datasets must share one tokenizer"
            )
    vocab_size = max(d.vocab_size for d in datasets)
    if vocab_size > model_vocab_size:
        raise ValueError(
            f"model.vocab_size ({model_vocab_size}) is smaller than the tokenizer's vocabulary ({vocab_size}) "
            f"recorded in {cfg.manifests[0]}/manifest.json; set model.vocab_size >= {vocab_size}"
        )
    return DatasetSummary(
        vocab_size=vocab_size,
        eos_id=first.eos_id,
        pad_id=first.pad_id if first.pad_id is not None else first.eos_id,
        train_documents=sum(len(d.split_indices("train")) for d in datasets),
        validation_documents=sum(len(d.split_indices("validation")) for d in datasets),
    )


def _make_packer(cfg: DataConfig, stream: DocumentStream, split: Split) -> Packer:
    if split == "train" and cfg.packing == "best_fit":
        return BestFitPacker(stream, cfg.seq_len, cfg.best_fit_buffer, seed=cfg.seed)
    return ConcatPacker(stream, cfg.seq_len)


class RankBatches(IterableDataset):
    """This rank's micro-batches of the global training row stream; yields (batch, packer state at the end
    of the batch's slot round)."""

    def __init__(
        self, cfg: DataConfig, *, rows: int, pad_id: int, rank: int, world_size: int, start: dict[str, Any] | None
    ) -> None:
        self.cfg, self.rows, self.pad_id = cfg, rows, pad_id
        self.rank, self.world_size = rank, world_size
        self.start = start

    def __iter__(self) -> Iterator[tuple[PackedBatch, dict[str, Any]]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        datasets = [TokenDataset(path) for path in self.cfg.manifests]
        stream = DocumentStream(
            datasets, [d.split_indices("train") for d in datasets], shard=0, num_shards=1, seed=self.cfg.seed,
            weights=self.cfg.weights or None,
        )
        packer = _make_packer(self.cfg, stream, "train")
        if self.start is not None:
            packer.load_state_dict(self.start)
        position = 0  # rows of the plan this worker has passed since `start`
        round_rows = self.world_size * self.rows
        for batch_index in itertools.count(worker, workers):
            first = batch_index * round_rows + self.rank * self.rows
            for _ in range(first - position):
                packer.next_row()
            rows = [packer.next_row() for _ in range(self.rows)]
            for _ in range((batch_index + 1) * round_rows - first - self.rows):
                packer.next_row()
            position = (batch_index + 1) * round_rows
            yield collate(rows, self.cfg.seq_len, self.pad_id), packer.state_dict()


class TrainLoader:
    """The endless training batches of one rank, resumable at a step boundary through state_dict (the same
    on every rank) and load_state_dict (under any rank or worker count)."""

    def __init__(
        self, cfg: DataConfig, *, rows: int, pad_id: int, rank: int, world_size: int, pin_memory: bool
    ) -> None:
        self.cfg, self.rows, self.pad_id = cfg, rows, pad_id
        self.rank, self.world_size, self.pin_memory = rank, world_size, pin_memory
        self._rows_consumed = 0
        self._packer_state: dict[str, Any] | None = None

    def __iter__(self) -> Iterator[PackedBatch]:
        base = self._rows_consumed
        batches = RankBatches(
            self.cfg, rows=self.rows, pad_id=self.pad_id, rank=self.rank, world_size=self.world_size,
            start=self._packer_state,
        )
        loader = DataLoader(
            batches, batch_size=None, num_workers=self.cfg.num_workers, pin_memory=self.pin_memory,
            persistent_workers=False,
        )
        for taken, (batch, state) in enumerate(loader, start=1):
            self._packer_state = state
            self._rows_consumed = base + taken * self.world_size * self.rows
            yield batch

    def state_dict(self) -> dict[str, Any]:
        """The global position once every rank has taken as many micro-batches as this one."""
        return {"rows": self._rows_consumed, "packer": self._packer_state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._rows_consumed, self._packer_state = state["rows"], state["packer"]


def validation_batches(
    cfg: DataConfig, *, rows: int, pad_id: int, rank: int, world_size: int, limit: int
) -> Iterator[PackedBatch]:
    """At most `limit` batches of this rank's share (every W-th document) of the validation split, always
    the same ones."""
    datasets = [TokenDataset(path) for path in cfg.manifests]
    stream = DocumentStream(
        datasets, [d.split_indices("validation") for d in datasets], shard=rank, num_shards=world_size,
        seed=cfg.seed, shuffle=False, loop=False,
    )
    rows_left = _rows_until_exhausted(_make_packer(cfg, stream, "validation"))
    for _ in range(limit):
        batch_rows = list(itertools.islice(rows_left, rows))
        if batch_rows:
            yield collate(batch_rows, cfg.seq_len, pad_id)
        if len(batch_rows) < rows:
            return


def _rows_until_exhausted(packer: Packer) -> Iterator[Row]:
    while True:
        try:
            row = packer.next_row()
        except StopIteration:
            return
        yield row


def empty_batch(cfg: DataConfig, rows: int, pad_id: int) -> PackedBatch:
    """A batch of padding only (no targets), for ranks that ran out of validation data while others have not."""
    return collate([[] for _ in range(rows)], cfg.seq_len, pad_id)

