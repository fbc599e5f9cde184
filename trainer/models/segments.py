"""How the flattened tokens of a packed batch split into documents; every sequence-mixing layer reads it."""

from dataclasses import dataclass, replace

import torch


@dataclass(frozen=True)
class Segments:
    """B rows of L tokens flattened to T = B * L; `cu_seqlens` int32 [N+1] marks document boundaries
    (0 .. T, every row end included) and `position_ids` [T] restart at 0 at each boundary."""

    cu_seqlens: torch.Tensor
    position_ids: torch.Tensor
    max_seqlen: int
    rows: int

    def to(self, device: torch.device) -> "Segments":
        return replace(
            self,
            cu_seqlens=self.cu_seqlens.to(device, non_blocking=True),
            position_ids=self.position_ids.to(device, non_blocking=True),
        )

    def pin_memory(self) -> "Segments":
        return replace(self, cu_seqlens=self.cu_seqlens.pin_memory(), position_ids=self.position_ids.pin_memory())
