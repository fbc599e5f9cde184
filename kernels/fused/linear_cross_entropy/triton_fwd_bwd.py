"""Linear + cross-entropy that never holds `[N, V]` logits: chunks of rows through cuBLAS and one Triton kernel.

Per chunk of rows: logits = h @ W.T (GEMM, float32 accumulation) into a reused buffer; the rows kernel
(rows_kernel.py) finds each row's logsumexp in float32 and overwrites the logits with d loss / d logits; two
more GEMMs turn that into the chunk's d hidden and add its share of d weight. For a scalar loss this runs in the
forward (the backward only scales by the incoming gradient); for reduction="none" the backward
recomputes the chunks with per-row gradient scales.
"""

from dataclasses import dataclass

import torch

from gristmill.kernels.fused.launch import check_triton_device
from gristmill.kernels.fused.linear_cross_entropy.reference import REDUCTIONS, reduce_token_losses
from gristmill.kernels.fused.linear_cross_entropy.rows_kernel import cross_entropy_rows

_CHUNK_ELEMENTS = 2**28


@dataclass(frozen=True, slots=True)
class LossSettings:
    """The loss options the chunk loop and its kernel need, carried through autograd as one value."""

    ignore_index: int
    z_loss: float
    label_smoothing: float
    chunk_size: int


def default_chunk_size(n_rows: int, vocab: int) -> int:
    """Rows per chunk: a power of two with about 2^28 logits per chunk (512 MiB in bf16), at most N."""
    rows = max(1, _CHUNK_ELEMENTS // vocab)
    return min(n_rows, 1 << (rows.bit_length() - 1))


def chunked_loss_and_grads(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    settings: LossSettings,
    grad_scale: torch.Tensor | None,
    need_grad_hidden: bool,
    need_grad_weight: bool,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Per-row losses [N] (0 on ignored rows) and, if `grad_scale` is given, the scaled gradients.

    `grad_scale` is float32, one value for all rows ([1]) or one per row ([N]); d weight accumulates
    across chunks in weight's dtype, one rounding per chunk.
    """
    n_rows, vocab = hidden.shape[0], weight.shape[0]
    compute_grad = grad_scale is not None
    loss_rows = torch.empty(n_rows, dtype=torch.float32, device=hidden.device)
    grad_hidden = torch.empty_like(hidden) if compute_grad and need_grad_hidden else None
    grad_weight = None
    chunk = min(settings.chunk_size, n_rows)
    logits_buffer = torch.empty(chunk, vocab, dtype=hidden.dtype, device=hidden.device)
    scale_per_row = grad_scale is not None and grad_scale.numel() > 1
    with torch.autocast(hidden.device.type, enabled=False):  # GEMMs in the dtype the caller chose
        for start in range(0, n_rows, chunk):
            stop = min(start + chunk, n_rows)
            hidden_chunk = hidden[start:stop]
            logits = logits_buffer[: stop - start]
            torch.mm(hidden_chunk, weight.t(), out=logits)
            scale = grad_scale[start:stop] if scale_per_row else grad_scale
            cross_entropy_rows(
                logits, labels[start:stop], loss_rows[start:stop], scale,
                settings.ignore_index, settings.z_loss, settings.label_smoothing,
            )
            if grad_hidden is not None:
                torch.mm(logits, weight, out=grad_hidden[start:stop])
            if compute_grad and need_grad_weight:
                if grad_weight is None:
                    grad_weight = torch.mm(logits.t(), hidden_chunk)
                else:
                    grad_weight.addmm_(logits.t(), hidden_chunk)
    return loss_rows, grad_hidden, grad_weight


def _scalar_grad_scale(labels: torch.Tensor, ignore_index: int, reduction: str) -> torch.Tensor:
    """d loss / d row loss for "mean" (1 / valid count) and "sum" (1), kept on the device: no sync."""
    if reduction == "sum":
        return torch.ones(1, dtype=torch.float32, device=labels.device)
    return 1.0 / (labels != ignore_index).sum().clamp_min(1).float().reshape(1)


class LinearCrossEntropyFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, labels, settings, reduction, need_grad_hidden, need_grad_weight):
        ctx.settings, ctx.reduction = settings, reduction
        ctx.need_grads = (need_grad_hidden, need_grad_weight)
        grad_scale = None
        if reduction != "none" and (need_grad_hidden or need_grad_weight):
            grad_scale = _scalar_grad_scale(labels, settings.ignore_index, reduction)
        loss_rows, grad_hidden, grad_weight = chunked_loss_and_grads(
            hidden, weight, labels, settings, grad_scale, need_grad_hidden, need_grad_weight
        )
        if reduction == "none":
            ctx.save_for_backward(hidden, weight, labels)
        else:
            ctx.save_for_backward(grad_hidden, grad_weight)
        ctx.backward_done = False
        return reduce_token_losses(loss_rows, labels != settings.ignore_index, reduction)

    @staticmethod
    def backward(ctx, grad_loss):
        if ctx.backward_done:
            raise RuntimeError("linear_cross_entropy: backward twice through one loss is not supported")
        ctx.backward_done = True
        if ctx.reduction == "none":
            hidden, weight, labels = ctx.saved_tensors
            _, grad_hidden, grad_weight = chunked_loss_and_grads(
                hidden, weight, labels, ctx.settings, grad_loss.float().contiguous(), *ctx.need_grads
            )
        else:
            grad_hidden, grad_weight = ctx.saved_tensors
            for grad in (grad_hidden, grad_weight):
                if grad is not None:
                    grad.mul_(grad_loss.to(grad.dtype))
        return grad_hidden, grad_weight, None, None, None, None, None


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    *,
    ignore_index: int = -100,
    z_loss: float = 0.0,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Cross-entropy of `hidden [N, D] @ weight[V, D].T` against labels `[N]` without `[N, V]` logits.

    Adds `z_loss · logsumexp²` per non-ignored token; label smoothing spreads `label_smoothing` evenly
    over the vocab (as torch's cross_entropy). Labels must be in [0, V) or equal ignore_index (others
are not checked, to avoid a device sync, and give a wrong loss). "mean" divides by the non-ignored count (an
    all-ignored batch gives 0). Under autocast, hidden and weight are cast to its dtype first. `chunk_size` rows of
    logits live at a time (default: about 2^28 logits). Gradients are computed in the forward for "mean"/"sum", so
    call backward once per loss.

    Example: `loss = linear_cross_entropy(h.flatten(0, 1), lm_head.weight, labels.flatten())`.
    """
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(
            f"linear_cross_entropy: hidden {tuple(hidden.shape)} must be [N, D] and weight {tuple(weight.shape)} [V, D]"
        )
    if torch.is_autocast_enabled(hidden.device.type):
        # what autocast would do to `hidden @ weight.T`; gradients flow back through the casts
        dtype = torch.get_autocast_dtype(hidden.device.type)
        hidden, weight = hidden.to(dtype), weight.to(dtype)
    if hidden.dtype != weight.dtype:
        raise ValueError(f"linear_cross_entropy: hidden dtype {hidden.dtype} != weight dtype {weight.dtype}")
    if labels.shape != (hidden.shape[0],) or labels.dtype not in (torch.int32, torch.int64):
        raise ValueError(
            f"linear_cross_entropy: labels {tuple(labels.shape)} {labels.dtype} must be int32/int64 [{hidden.shape[0]}]"
        )
    if reduction not in REDUCTIONS:
        raise ValueError(f"linear_cross_entropy: reduction {reduction!r} is not one of {REDUCTIONS}")
    if not 0.0 <= label_smoothing < 1.0 or z_loss < 0.0:
        raise ValueError(
            f"linear_cross_entropy: need 0 <= label_smoothing < 1 ({label_smoothing}), z_loss >= 0 ({z_loss})"
        )
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"linear_cross_entropy: chunk_size must be positive, got {chunk_size}")
    if hidden.shape[0] == 0:
        raise ValueError("linear_cross_entropy: hidden has no rows")
    check_triton_device("linear_cross_entropy", hidden, weight, labels)
    settings = LossSettings(
        ignore_index, float(z_loss), float(label_smoothing),
        chunk_size or default_chunk_size(hidden.shape[0], weight.shape[0]),
    )
    grad_on = torch.is_grad_enabled()
    return LinearCrossEntropyFn.apply(
        hidden.contiguous(), weight.contiguous(), labels.contiguous(), settings, reduction,
        grad_on and hidden.requires_grad, grad_on and weight.requires_grad,
    )
