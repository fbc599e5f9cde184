"""Options every dedup stage shares: how finely its shuffles are split and how many rows a batch holds."""

from dataclasses import dataclass


@dataclass(kw_only=True)
class ShuffleOptions:
    partitions: int = 8
    """Reduce tasks per shuffle; a reducer holds about 1/partitions of the shuffled rows in memory."""
    batch_size: int = 1024
    """Documents hashed at once; bounds the memory of the map phases together with document sizes."""

    def __post_init__(self) -> None:
        if self.partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {self.partitions}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
