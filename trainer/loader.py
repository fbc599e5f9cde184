"""Packed batches from token datasets for one rank: opened and checked up front, packed in loader workers.

Each (rank, worker) pair is its own data shard, so nothing is read twice and nothing is skipped. Every batch
comes back with the packer state of the worker that made it; the loader keeps the latest state per worker
and how many batches it handed out. A DataLoader asks its workers round-robin starting at worker 0, so on
resume the workers' roles are rotated by (batches % workers): the next batch then comes from the worker
whose turn it was, and the resumed run sees exactly the tokens the uninterrupted one would have.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from gristmill.tokenizer.shard_format import TokenDataset
from gristmill.trainer.config import DataConfig
from gristmill.trainer.data import DocumentStream
from gristmill.trainer.packing import BestFitPacker, ConcatPacker, PackedBatch, Packer, collate

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
        return BestFitPacker(stream, cfg.seq_len, cfg.best_fit_buffer)
    return ConcatPacker(stream, cfg.seq_len)


class PackedBatches(IterableDataset):
    """Batches of `rows` packed rows from this rank's share of `split`; yields (batch, worker, packer state)."""

    def __init__(
        self,
        cfg: DataConfig,
        split: Split,
        *,
        rows: int,
        pad_id: int,
        rank: int,
        world_size: int,
        worker_states: dict[int, dict[str, Any]] | None = None,
        rotation: int = 0,
    ) -> None:
        self.cfg, self.split, self.rows, self.pad_id = cfg, split, rows, pad_id
        self.rank, self.world_size = rank, world_size
        self.workers = max(cfg.num_workers, 1) if split == "train" else 1
        self.worker_states = worker_states or {}
        self.rotation = rotation

    def __iter__(self) -> Iterator[tuple[PackedBatch, int, dict[str, Any]]]:
        info = get_worker_info()
        worker = ((info.id if info is not None else 0) + self.rotation) % self.workers
        datasets = [TokenDataset(path) for path in self.cfg.manifests]
        training = self.split == "train"
        stream = DocumentStream(
            datasets,
            [d.split_indices(self.split) for d in datasets],
            shard=self.rank * self.workers + worker,
            num_shards=self.world_size * self.workers,
            seed=self.cfg.seed,
            weights=self.cfg.weights or None,
            shuffle=training,
            loop=training,
        )
        packer = _make_packer(self.cfg, stream, self.split)
        if worker in self.worker_states:
            packer.load_state_dict(self.worker_states[worker])
        while True:
            rows = []
            for _ in range(self.rows):
                try:
                    rows.append(packer.next_row())
                except StopIteration:
                    break
            if rows:
                yield collate(rows, self.cfg.seq_len, self.pad_id), worker, packer.state_dict()
            if len(rows) < self.rows:
                return


class TrainLoader:
    """The endless training batches of one rank, resumable through state_dict/load_state_dict."""

    def __init__(
        self, cfg: DataConfig, *, rows: int, pad_id: int, rank: int, world_size: int, pin_memory: bool
    ) -> None:
        self.cfg, self.rows, self.pad_id = cfg, rows, pad_id
        self.rank, self.world_size, self.pin_memory = rank, world_size, pin_memory
        self._worker_states: dict[int, dict[str, Any]] = {}
        self._batches = 0

    def __iter__(self) -> Iterator[PackedBatch]:
        workers = max(self.cfg.num_workers, 1)
        batches = PackedBatches(
            self.cfg, "train", rows=self.rows, pad_id=self.pad_id, rank=self.rank, world_size=self.world_size,
            worker_states=dict(self._worker_states), rotation=self._batches % workers,
        )
        loader = DataLoader(
            batches, batch_size=None, num_workers=self.cfg.num_workers, pin_memory=self.pin_memory,
            persistent_workers=False,
        )
        for batch, worker, state in loader:
            self._worker_states[worker] = state
            self._batches += 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        return {
            "batches": self._batches,
            "workers": max(self.cfg.num_workers, 1),
            "worker_states": {str(k): v for k, v in self._worker_states.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        workers = max(self.cfg.num_workers, 1)
        if state["workers"] != workers:
            raise ValueError(
                f"the checkpoint's loader ran {state['workers']} data workers per rank, this run has {workers}: "
                "set data.num_workers to match to resume the same token stream"
            )
        self._batches = state["batches"]
        self._worker_states = {int(k): v for k, v in state["worker_states"].items()}


def validation_batches(
    cfg: DataConfig, *, rows: int, pad_id: int, rank: int, world_size: int, limit: int
) -> Iterator[PackedBatch]:
    """At most `limit` batches of this rank's share of the validation split, always the same ones."""
    batches = PackedBatches(cfg, "validation", rows=rows, pad_id=pad_id, rank=rank, world_size=world_size)
    for count, (batch, _, _) in enumerate(batches):
        if count == limit:
            return
        yield batch


def empty_batch(cfg: DataConfig, rows: int, pad_id: int) -> PackedBatch:
    """A batch of padding only (no targets), for ranks that ran out of validation data while others have not."""
    return collate([[] for _ in range(rows)], cfg.seq_len, pad_id)

