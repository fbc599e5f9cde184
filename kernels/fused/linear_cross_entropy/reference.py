"""Linear + cross-entropy in plain PyTorch: materializes the full float32 logits, as a model head does."""

import torch
import torch.nn.functional as F

REDUCTIONS = ("mean", "sum", "none")


def linear_cross_entropy_reference(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    *,
    ignore_index: int = -100,
    z_loss: float = 0.0,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """Cross-entropy of `hidden @ weight.T` (+ z_loss · logsumexp², on non-ignored tokens).

    "mean" divides by the count of non-ignored tokens (at least 1, so an all-ignored batch gives 0).
    """
    return cross_entropy_reference(
        hidden @ weight.t(), labels, ignore_index=ignore_index, z_loss=z_loss, label_smoothing=label_smoothing,
        reduction=reduction,
    )


def cross_entropy_reference(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    ignore_index: int = -100,
    z_loss: float = 0.0,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """The loss of given logits `[N, V]` (half precision upcast to float32), as the rows kernel computes it."""
    logits = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    valid = labels != ignore_index
    losses = F.cross_entropy(
        logits, labels, ignore_index=ignore_index, label_smoothing=label_smoothing, reduction="none"
    )
    if z_loss:
        losses = losses + z_loss * torch.where(valid, torch.logsumexp(logits, dim=-1) ** 2, 0.0)
    return reduce_token_losses(losses, valid, reduction)


def reduce_token_losses(losses: torch.Tensor, valid: torch.Tensor, reduction: str) -> torch.Tensor:
    """Per-token losses (0 where ignored) to the requested reduction; "mean" over valid tokens, at least 1."""
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    return losses.sum() / valid.sum().clamp_min(1)
