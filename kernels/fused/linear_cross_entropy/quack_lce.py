"""Linear + cross-entropy through quack's scaled-exp pipeline (optional dependency `quack-kernels`, Hopper only).

Our chunk loop writes each chunk's logits, reads them twice in the rows kernel and writes their gradient back: at
V 50304 those row passes run at HBM bandwidth and cost ~7 ms of a transformer_350m step. quack's logits GEMM keeps
per-tile maxima and sums of exponentials in its epilogue, so the loss needs no pass over the logits, and its dx and dW
GEMMs rescale the stored exponentials on the fly; dW accumulates in float32 across chunks. Measured 1.16x over ours
on the trainer's head (README.md). It has no z-loss or label smoothing: those runs keep our kernel.
"""

import functools
from collections.abc import Callable
from typing import NamedTuple

import torch

from gristmill.kernels.fused.quack_support import (
    FailureRecord, QuackFailed, compute_dtype, hopper_reason, import_quack,
)

CHUNK_ROWS_CHOICES = (4096, 8192, 2048)
"""Rows per chunk, in order of preference: 8192 ran no faster than 4096 at V 50304 and held 400 MiB more."""
QUACK_ROW_MULTIPLE = 128
"""quack pads the last chunk to a multiple of this many rows."""


def chunk_rows(n_rows: int, width: int, vocab: int) -> int | None:
    """The first chunk size whose chunks (the padded last one too) are neither `width` nor `vocab` rows tall, or
    None. quack 0.6.5 tells its epilogue's row vectors from column vectors by the GEMM's shape and raises when the
    chunk's rows equal the other dimension (`m == n makes row/col inference ambiguous`, seen at width 4096)."""
    for rows in CHUNK_ROWS_CHOICES:
        full_chunks = (n_rows - 1) // rows
        last = n_rows - full_chunks * rows
        heights = {-(-last // QUACK_ROW_MULTIPLE) * QUACK_ROW_MULTIPLE} | ({rows} if full_chunks else set())
        if not heights & {width, vocab}:
            return rows
    return None


class QuackLossFailed(QuackFailed):
    """quack raised on the loss; the loss can go on with our chunked kernel."""


_failures = FailureRecord(QuackLossFailed)


class _QuackLoss(NamedTuple):
    loss: Callable
    """hidden, weight, labels, chunk rows, ignore_index, reduction -> loss, differentiable in hidden and weight"""
    supported: Callable
    """hidden, weight, chunk rows, reduction -> whether the scaled-exp pipeline takes these inputs"""


@functools.cache
def _quack_loss() -> tuple[_QuackLoss | None, str | None]:
    """quack's scaled-exp loss and its eligibility check, or None and why they cannot be imported."""
    found, reason = import_quack(
        "loss: quack's scaled-exp linear + cross-entropy",
        "quack.linear_cross_entropy:scaled_exp_linear_cross_entropy",
        "quack.linear_cross_entropy:scaled_exp_lce_supported",
    )
    return (None if found is None else _QuackLoss(*found)), reason


def quack_linear_cross_entropy_unavailable_reason(
    hidden: torch.Tensor, weight: torch.Tensor, *, z_loss: float = 0.0, label_smoothing: float = 0.0
) -> str | None:
    """None when `quack_linear_cross_entropy` can run these inputs, else why not (the caller takes our kernel)."""
    if (earlier := _failures.earlier()) is not None:
        return earlier
    if z_loss or label_smoothing:
        return "quack's loss has no z-loss or label smoothing"
    device = hopper_reason(hidden, exactly=True)
    if device is not None:
        return device
    dtypes = {compute_dtype(hidden), compute_dtype(weight)}
    if dtypes != {torch.bfloat16}:
        return f"quack's loss computes in bf16 only, these inputs in {sorted(map(str, dtypes))}"
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        return f"hidden {tuple(hidden.shape)} and weight {tuple(weight.shape)} are not [N, D] and [V, D]"
    quack, reason = _quack_loss()
    if quack is None:
        return reason
    vocab, width = weight.shape
    rows = chunk_rows(hidden.shape[0], width, vocab)
    if rows is None:
        return f"every chunk size of quack's loss would make a chunk {width} or {vocab} rows tall"
    if not quack.supported(hidden, weight, rows, "sum"):
        return f"quack's scaled-exp pipeline does not take vocab {vocab} x width {width}"
    return None


def quack_linear_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, *, ignore_index: int
) -> torch.Tensor:
    """Summed token loss of hidden `[N, D]` @ weight `[V, D]`.T against labels `[N]`, differentiable in hidden and
    weight; check `quack_linear_cross_entropy_unavailable_reason` first. Under autocast quack casts as a matmul would
    and hands weight's gradient back in weight's own dtype (float32 parameters skip a bf16 round trip). A failure
    inside quack's forward raises `QuackLossFailed` and makes every later unavailable reason name it."""
    quack, reason = _quack_loss()
    if quack is None:
        raise ValueError(f"quack_linear_cross_entropy needs quack-kernels: {reason}")
    if labels.shape != (hidden.shape[0],) or labels.dtype not in (torch.int32, torch.int64):
        raise ValueError(
            f"quack_linear_cross_entropy: labels {tuple(labels.shape)} {labels.dtype} must be int32/int64 "
            f"[{hidden.shape[0]}]"
        )
    rows = chunk_rows(hidden.shape[0], weight.shape[1], weight.shape[0])
    if rows is None:
        raise ValueError("quack_linear_cross_entropy: no chunk size fits these shapes; check the unavailable reason")
    return _failures.call(quack.loss, hidden, weight, labels, rows, ignore_index, "sum")
