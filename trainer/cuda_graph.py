"""A micro-batch's forward and backward replayed from CUDA graphs instead of launched op by op from Python.

An eager step of a ~350M model launches a few thousand kernels; with few rows per step the GPU waits on those
launches. Captured once, each pass is one graph launch: on an H100 at 2 rows of 4096 the hybrid trains 2.03x
and the transformer 1.47x faster, at 8 rows (GPU-bound) no faster (bench/results/end_to_end.md, run 4).

A graph fixes every shape and launch grid, so a batch enters it in one layout: `cu_seqlens` padded with empty
documents to a fixed count, and every document bounded by seq_len (the kernels size their grids by the longest
document, which an upper bound may replace). A batch with more documents than the graph holds runs eagerly
and is counted.
"""

from collections.abc import Callable

import torch
from torch import nn

from gristmill.pipeline.log import get_logger
from gristmill.trainer.config import TrainConfig
from gristmill.trainer.models.segments import Segments
from gristmill.trainer.packing import PackedBatch

_log = get_logger(__name__)


def check_graphable(cfg: TrainConfig, device: torch.device, parallelism: str) -> None:
    """Raises ValueError naming what stands in the way of `cuda_graphs = true`."""
    problems = [
        (device.type != "cuda", f"a CUDA device (this run is on {device.type})"),
        (parallelism != "none", f"one process (parallelism here: {parallelism})"),
        (not cfg.kernels, "kernels = true (the reference ops read document offsets back to the host)"),
        (cfg.compile, "compile = false"),
        (cfg.grad_accum_steps != 1, f"grad_accum_steps = 1 (got {cfg.grad_accum_steps})"),
    ]
    missing = [need for failed, need in problems if failed]
    if missing:
        raise ValueError("cuda_graphs = true needs " + "; ".join(missing))


def graph_documents(cfg: TrainConfig) -> int:
    """Documents per micro-batch the graphs hold: the configured count, or one per 256 tokens."""
    return cfg.cuda_graph_documents or max(1, cfg.micro_batch_rows * cfg.data.seq_len // 256)


def padded_offsets(cu_seqlens: torch.Tensor, documents: int) -> torch.Tensor:
    """cu_seqlens `[N+1]` -> `[documents+1]` by appending empty documents at the end (every kernel accepts them)."""
    missing = documents + 1 - cu_seqlens.shape[0]
    if missing < 0:
        raise ValueError(f"{cu_seqlens.shape[0] - 1} documents do not fit a layout of {documents}")
    return torch.cat([cu_seqlens, cu_seqlens[-1:].expand(missing)])


class _TensorArgsModel(nn.Module):
    """The model's forward over plain tensors, which is what a capture takes, with the layout constants bound."""

    def __init__(self, model: nn.Module, max_seqlen: int, rows: int) -> None:
        super().__init__()
        self.model, self.max_seqlen, self.rows = model, max_seqlen, rows

    def forward(
        self, input_ids: torch.Tensor, labels: torch.Tensor, cu_seqlens: torch.Tensor, position_ids: torch.Tensor
    ) -> torch.Tensor:
        return self.model(input_ids, labels, Segments(cu_seqlens, position_ids, self.max_seqlen, self.rows))


class GraphedModel:
    """Calls `model(input_ids, labels, segments)` through CUDA graphs captured at the first batch.

    Gradients land in the parameters' `.grad` as after an eager backward. Graph replays overwrite their
    static gradient buffers, so every backward must be followed by the optimizer step before the next one
    (no gradient accumulation).
    """

    def __init__(self, model: nn.Module, documents: int, seq_len: int) -> None:
        self.model, self.documents, self.seq_len = model, documents, seq_len
        self.eager_batches = 0
        self._graphed: Callable[..., torch.Tensor] | None = None

    def __call__(self, batch: PackedBatch) -> torch.Tensor:
        segments = batch.segments
        documents = segments.cu_seqlens.shape[0] - 1
        if documents > self.documents or segments.max_seqlen > self.seq_len:
            self.eager_batches += 1
            if self.eager_batches == 1:
                _log.warning(
                    "a batch of %d documents does not fit the CUDA graph's %d: it runs eagerly (raise "
                    "cuda_graph_documents if this repeats)", documents, self.documents,
                )
            return self.model(batch.input_ids, batch.labels, segments)
        args = (batch.input_ids, batch.labels, padded_offsets(segments.cu_seqlens, self.documents),
                segments.position_ids)
        if self._graphed is None:
            self._graphed = self._capture(args, segments.rows)
        return self._graphed(*args)

    def _capture(self, args: tuple[torch.Tensor, ...], rows: int) -> Callable[..., torch.Tensor]:
        """Warms up (Triton compiles and autotunes there) and captures; the first batch is the sample."""
        _log.info("capturing the forward and backward as CUDA graphs (%d documents per batch)", self.documents)
        wrapper = _TensorArgsModel(self.model, self.seq_len, rows)
        return torch.cuda.make_graphed_callables(wrapper, args)
