"""The training loop: build every piece from the config, step, validate, log, checkpoint, resume."""

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist

from gristmill.pipeline.log import get_logger
from gristmill.trainer import ops
from gristmill.trainer.checkpoint import (
    Checkpointer,
    capture_rng,
    load_model_and_optimizer,
    model_and_optimizer_state,
    restore_rng,
)
from gristmill.trainer.config import TrainConfig
from gristmill.trainer.cuda_graph import GraphedModel, check_graphable, graph_documents
from gristmill.trainer.loader import DatasetSummary, TrainLoader, check_datasets, empty_batch, validation_batches
from gristmill.trainer.metrics import MetricsWriter, ThroughputMeter, peak_flops, training_flops
from gristmill.trainer.models.model import LanguageModel, matmul_params
from gristmill.trainer.optim import build_optimizer, clipped_step
from gristmill.trainer.packing import PackedBatch
from gristmill.trainer.parallel import (
    Runtime,
    compute_dtype,
    gradient_sync,
    init_runtime,
    parallelize,
    resolve_parallelism,
)
from gristmill.trainer.schedule import build_scheduler

_log = get_logger(__name__)


class Trainer:
    def __init__(self, cfg: TrainConfig, *, resume: bool = False) -> None:
        self.cfg = cfg
        self.data: DatasetSummary = check_datasets(cfg.data, cfg.model.vocab_size)
        self.runtime: Runtime = init_runtime()
        self.parallelism = resolve_parallelism(cfg, self.runtime)
        ops.enable_kernels(
            cfg.kernels, quack_mlp=cfg.quack_mlp, quack_loss=cfg.quack_loss, quack_qkv=cfg.quack_qkv,
            quack_projections=cfg.quack_projections,
        )
        self.model = self._build_model()
        self.graphed = self._build_graphed_model()
        self.optimizer = build_optimizer(self.model, cfg.optimizer, self.runtime.device)
        self.scheduler = build_scheduler(self.optimizer, cfg.schedule, cfg.steps)
        self.loader = self._build_loader()
        self.checkpointer = Checkpointer(
            cfg.out_dir / "checkpoints", keep_last=cfg.checkpoint.keep_last,
            rank=self.runtime.rank, world_size=self.runtime.world_size,
        )
        self.metrics = MetricsWriter(cfg.out_dir, enabled=self.runtime.is_main, tensorboard=cfg.metrics.tensorboard)
        self.matmul_params = matmul_params(cfg.model)
        self.peak = peak_flops(self.runtime.device, cfg.metrics.peak_tflops)
        self.step = 0
        self.rank_tokens = 0  # real tokens this rank trained on (rank 0 adds those before a resume); summed in logs
        if resume:
            self._restore()

    def _build_model(self) -> torch.nn.Module:
        torch.manual_seed(self.cfg.seed)
        with torch.device(self.runtime.device):
            model = LanguageModel(self.cfg.model)
        return parallelize(model, self.cfg, self.runtime, self.parallelism)

    def _build_graphed_model(self) -> GraphedModel | None:
        if not self.cfg.cuda_graphs:
            return None
        check_graphable(self.cfg, self.runtime.device, self.parallelism)
        return GraphedModel(self.model, graph_documents(self.cfg), self.cfg.data.seq_len)

    def _build_loader(self) -> TrainLoader:
        return TrainLoader(
            self.cfg.data, rows=self.cfg.micro_batch_rows, pad_id=self.data.pad_id, rank=self.runtime.rank,
            world_size=self.runtime.world_size, pin_memory=self.runtime.device.type == "cuda",
        )

    def _autocast(self) -> contextlib.AbstractContextManager:
        dtype = compute_dtype(self.cfg, self.runtime.device)
        if dtype != torch.float32:  # a graph capture cannot hold autocast's cache of cast weights
            return torch.autocast(self.runtime.device.type, dtype=dtype, cache_enabled=self.graphed is None)
        return contextlib.nullcontext()

    def _sum_over_ranks(self, value: torch.Tensor) -> torch.Tensor:
        if self.runtime.world_size > 1:
            dist.all_reduce(value)
        return value

    def fit(self, *, stop_at: int | None = None) -> list[dict[str, Any]]:
        """Trains up to cfg.steps (or `stop_at`, to end early as a crash would); returns the logged records."""
        cfg, last = self.cfg, min(self.cfg.steps, stop_at or self.cfg.steps)
        batches = iter(self.loader)
        meter = ThroughputMeter()
        history = []
        while self.step < last:
            micro_batches = [next(batches) for _ in range(cfg.grad_accum_steps)]
            loss, grad_norm = self.train_step(micro_batches)
            for batch in micro_batches:
                meter.add(batch, training_flops(cfg.model, self.matmul_params, batch))
                self.rank_tokens += batch.real_tokens
            self.step += 1
            if self.step % cfg.metrics.log_every == 0 or self.step == last:
                history.append(self._log_step(loss, grad_norm, meter))
                meter.reset()
            if cfg.eval_every and self.step % cfg.eval_every == 0:
                validation = self.validate()
                if validation is not None:
                    self.metrics.write(self.step, {"val_loss": validation})
                    history.append({"step": self.step, "val_loss": validation})
            if (cfg.checkpoint.every_steps and self.step % cfg.checkpoint.every_steps == 0) or self.step == cfg.steps:
                self.save()
        return history

    def _log_step(self, loss: torch.Tensor, grad_norm: torch.Tensor, meter: ThroughputMeter) -> dict[str, Any]:
        """Writes the step's record; token counts and rates are summed over ranks (a collective)."""
        device = self.runtime.device
        record = {
            "loss": loss.item(),
            "grad_norm": grad_norm.item(),
            "lr": self.scheduler.get_last_lr()[0],
            "tokens_seen": self._tokens_seen(),
            **meter.summary(self._sum_over_ranks(meter.as_tensor(device)), self.runtime.world_size, self.peak),
        }
        self.metrics.write(self.step, record)
        return {"step": self.step, **record}

    def train_step(self, micro_batches: list[PackedBatch]) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step over the micro-batches; the loss is averaged over every target token of the
        global batch, so accumulation and ranks never reweight documents."""
        device = self.runtime.device
        # torch.full fills on the device; torch.tensor(..., device=cuda) would copy and wait for the GPU queue.
        targets = self._sum_over_ranks(
            torch.full((), float(sum(b.target_tokens for b in micro_batches)), device=device)
        ).clamp_min(1.0)
        # FSDP2 and DDP average gradients over ranks; scaling by world_size turns that average back into a sum.
        scale = self.runtime.world_size / targets
        loss_sum = torch.zeros((), device=device)
        for index, batch in enumerate(micro_batches):
            batch = batch.to(device)
            with gradient_sync(self.model, self.parallelism, index == len(micro_batches) - 1):
                with self._autocast():
                    if self.graphed is None:
                        batch_loss = self.model(batch.input_ids, batch.labels, batch.segments)
                    else:
                        batch_loss = self.graphed(batch)
                (batch_loss * scale).backward()
            loss_sum += batch_loss.detach().float()
        max_norm = self.cfg.optimizer.grad_clip or math.inf
        grad_norm = clipped_step(self.optimizer, list(self.model.parameters()), max_norm)
        if hasattr(grad_norm, "full_tensor"):
            grad_norm = grad_norm.full_tensor()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return self._sum_over_ranks(loss_sum) / targets, grad_norm

    @torch.no_grad()
    def validate(self) -> float | None:
        """Mean loss over (at most eval_batches per rank of) the validation split; None if it is empty."""
        self.model.eval()
        device = self.runtime.device
        batches = self._validation_batches()
        loss_sum = torch.zeros((), device=device)
        targets = torch.zeros((), device=device)
        for batch in batches:
            with self._autocast():
                loss_sum += self.model(batch.input_ids, batch.labels, batch.segments).float()
            targets += batch.target_tokens
        self.model.train()
        total = float(self._sum_over_ranks(targets))
        if total == 0:
            _log.warning("no validation documents (manifest validation_fraction is 0?); skipping validation")
            return None
        return float(self._sum_over_ranks(loss_sum)) / total

    def _validation_batches(self) -> Iterator[PackedBatch]:
        """This rank's validation batches; ranks that run out early feed padding until all are done, since
        every FSDP forward is a collective all ranks must join."""
        cfg, runtime = self.cfg, self.runtime
        own = validation_batches(
            cfg.data, rows=cfg.micro_batch_rows, pad_id=self.data.pad_id, rank=runtime.rank,
            world_size=runtime.world_size, limit=cfg.eval_batches,
        )
        while True:
            batch = next(own, None)
            if runtime.world_size > 1:
                more = torch.tensor(float(batch is not None), device=runtime.device)
                dist.all_reduce(more, op=dist.ReduceOp.MAX)
                if not more:
                    return
                batch = batch or empty_batch(cfg.data, cfg.micro_batch_rows, self.data.pad_id)
            elif batch is None:
                return
            yield batch.to(runtime.device)

    def _tokens_seen(self) -> int:
        """Real tokens trained on by all ranks together (a collective)."""
        tokens = torch.tensor(self.rank_tokens, dtype=torch.float64, device=self.runtime.device)
        return int(self._sum_over_ranks(tokens))

    def save(self) -> None:
        shared = {
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
            "loader": self.loader.state_dict(),
            "tokens_seen": self._tokens_seen(),
        }
        tensors = model_and_optimizer_state(self.model, self.optimizer)
        path = self.checkpointer.save(self.step, tensors, shared, {"rng": capture_rng()})
        _log.info("saved %s", path)

    def _restore(self) -> None:
        tensors = model_and_optimizer_state(self.model, self.optimizer)
        restored = self.checkpointer.load_latest(tensors)
        if restored is None:
            _log.warning("--resume: no checkpoint under %s yet; starting from step 0", self.checkpointer.directory)
            return
        load_model_and_optimizer(self.model, self.optimizer, tensors)
        shared = restored.shared
        self.scheduler.load_state_dict(shared["scheduler"])
        self.step = shared["step"]
        self.rank_tokens = shared["tokens_seen"] if self.runtime.is_main else 0
        self.loader.load_state_dict(shared["loader"])
        if restored.own is not None:
            restore_rng(restored.own["rng"])
        else:
            _log.info(
                "checkpoint written by %d ranks, resumed on %d: model and optimizer resharded, data continues at "
                "global row %d, RNG states start from this run's seeds",
                restored.world_size, self.runtime.world_size, shared["loader"]["rows"],
            )
        _log.info("resumed from step %d", self.step)

    def close(self) -> None:
        self.metrics.close()
        if self.runtime.owns_process_group and dist.is_initialized():
            dist.destroy_process_group()
