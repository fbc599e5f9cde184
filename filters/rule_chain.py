"""Turns a filter's ordered rules into one verdict: each removed row names the first rule it failed.

Rules are checked in order and the first failure wins, as in the reference implementations, so the
reason and the measured value in `removed/` say exactly which threshold a document crossed.
"""

import numpy as np
import pyarrow as pa
from gristmill.pipeline.stage import Verdict


class RuleChain:
    """Collects `(reason, failed, value)` per rule for a batch of `rows` documents."""

    def __init__(self, rows: int) -> None:
        self.undecided = np.ones(rows, dtype=bool)
        self.reason = np.full(rows, None, dtype=object)
        self.value = np.full(rows, np.nan)

    def check(self, reason: str, failed: np.ndarray, value: np.ndarray | float) -> None:
        """Marks the still-kept rows where `failed` is true as removed by `reason` with `value` measured."""
        hit = self.undecided & np.asarray(failed, dtype=bool)
        self.reason[hit] = reason
        self.value[hit] = np.broadcast_to(np.asarray(value, dtype=np.float64), hit.shape)[hit]
        self.undecided &= ~hit

    def verdict(self) -> Verdict:
        return Verdict(
            keep=self.undecided.copy(),
            reason=pa.array(self.reason, pa.string()),
            value=pa.array(self.value, pa.float64(), from_pandas=True),
        )
