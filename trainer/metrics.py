"""Training metrics: throughput and MFU accounting, and one writer for stdout, metrics.jsonl and TensorBoard."""

import json
import time
from pathlib import Path
from typing import Any

import torch

from gristmill.pipeline.log import get_logger
from gristmill.trainer.models.config import ModelConfig
from gristmill.trainer.packing import PackedBatch

_log = get_logger(__name__)

_PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}
"""Dense bf16 peak of one accelerator (vendor datasheets, SXM parts)."""


def peak_flops(device: torch.device, configured_tflops: float) -> float | None:
    """FLOP/s that MFU divides by: the configured value, else a known GPU's datasheet peak, else None."""
    if configured_tflops > 0:
        return configured_tflops * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((tflops * 1e12 for key, tflops in _PEAK_BF16_TFLOPS.items() if key in name), None)


def training_flops(cfg: ModelConfig, matmul_params: int, batch: PackedBatch) -> float:
    """Forward + backward FLOPs worth counting in a batch: 6 per matmul parameter per real token, plus 12 *
    d_model per attended (query, key) pair inside documents per attention layer. Padding and the SSD scan's
    own arithmetic are not counted, so packed and padded runs are compared on the same useful work."""
    attention_layers = cfg.layer_pattern.count("A")
    return 6.0 * matmul_params * batch.real_tokens + 12.0 * attention_layers * cfg.d_model * batch.attended_pairs


class ThroughputMeter:
    """Counts tokens, useful FLOPs and packing outcomes of one rank between two log points."""

    FIELDS = ("real_tokens", "slots", "documents", "split_documents", "flops")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.start = time.perf_counter()
        self.counts = dict.fromkeys(self.FIELDS, 0.0)

    def add(self, batch: PackedBatch, flops: float) -> None:
        self.counts["real_tokens"] += batch.real_tokens
        self.counts["slots"] += batch.input_ids.numel()
        self.counts["documents"] += batch.documents
        self.counts["split_documents"] += batch.split_documents
        self.counts["flops"] += flops

    def as_tensor(self, device: torch.device) -> torch.Tensor:
        """The counts as one float64 tensor, to be summed over ranks in a single all-reduce."""
        return torch.tensor([self.counts[f] for f in self.FIELDS], dtype=torch.float64, device=device)

    def summary(self, all_ranks: torch.Tensor, world_size: int, peak: float | None) -> dict[str, float]:
        """Rates over all ranks from the summed counts; MFU divides by every rank's peak."""
        totals = dict(zip(self.FIELDS, all_ranks.tolist()))
        seconds = max(time.perf_counter() - self.start, 1e-9)
        values = {
            "tokens_per_s": totals["real_tokens"] / seconds,
            "packing_efficiency": totals["real_tokens"] / max(totals["slots"], 1.0),
            "truncation_rate": totals["split_documents"] / max(totals["documents"], 1.0),
        }
        if peak is not None:
            values["mfu"] = totals["flops"] / seconds / (peak * world_size)
        return values


class MetricsWriter:
    """Writes one record per log point to stdout, out_dir/metrics.jsonl and (optionally) TensorBoard.

    Only the main rank writes; others hold a writer that does nothing.
    """

    def __init__(self, out_dir: Path, *, enabled: bool, tensorboard: bool) -> None:
        self.enabled = enabled
        self._jsonl = None
        self._tensorboard = None
        if not enabled:
            return
        out_dir.mkdir(parents=True, exist_ok=True)
        self._jsonl = (out_dir / "metrics.jsonl").open("a", encoding="utf-8")
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                _log.warning("metrics.tensorboard is on but the `tensorboard` package is missing; not writing events")
            else:
                self._tensorboard = SummaryWriter(log_dir=str(out_dir / "tensorboard"))

    def write(self, step: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"step": step, **values}
        _log.info("step %d  %s", step, "  ".join(f"{k} {_short(v)}" for k, v in values.items()))
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        if self._tensorboard is not None:
            for key, value in values.items():
                self._tensorboard.add_scalar(key, value, step)

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
        if self._tensorboard is not None:
            self._tensorboard.close()


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
