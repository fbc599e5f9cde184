"""How the flattened tokens of a packed batch split into documents; every sequence-mixing layer reads it."""

from dataclasses import dataclass, replace

import torch

from gristmill.kernels.host_offsets import trust_host_offsets


@dataclass(frozen=True)
class Segments:
    """B rows of L tokens flattened to T = B * L; `cu_seqlens` int32 [N+1] marks document boundaries
    (0 .. T, every row end included) and `position_ids` [T] restart at 0 at each boundary."""

    cu_seqlens: torch.Tensor
    position_ids: torch.Tensor
    max_seqlen: int
    rows: int

    def to(self, device: torch.device) -> "Segments":
        """The segments on `device`. Offsets that come from the host are checked here, where reading them costs
        nothing, and their copy is marked checked for the kernels, which would otherwise read it back from the GPU
        (a sync at the first layer of every step)."""
        cu_seqlens = self.cu_seqlens.to(device, non_blocking=True)
        if self.cu_seqlens.device.type == "cpu":
            trust_host_offsets(cu_seqlens, self.cu_seqlens.tolist(), self.max_seqlen)
        return replace(self, cu_seqlens=cu_seqlens, position_ids=self.position_ids.to(device, non_blocking=True))

    def pin_memory(self) -> "Segments":
        return replace(self, cu_seqlens=self.cu_seqlens.pin_memory(), position_ids=self.position_ids.pin_memory())
