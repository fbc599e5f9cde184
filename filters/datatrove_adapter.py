"""Runs any datatrove filter (a `BaseFilter` subclass) as a gristmill stage, on either executor.

Arrow rows become datatrove `Document`s only inside this stage and come back as rows: a kept document
keeps the text and metadata the filter left it with (C4's line removal, a language filter's
`language`), a removed one goes to `removed/` with the filter's own reason (or its class name).
"""

import importlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
from gristmill.filters.rule_chain import RuleChain
from gristmill.pipeline.stage import ShardContext, Stage, apply_verdict


@dataclass(kw_only=True)
class DatatroveFilterConfig:
    filter: str
    """The filter class: "module:Class" or "module.Class", e.g. "datatrove.pipeline.filters:GopherQualityFilter"."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the filter's constructor."""

    def __post_init__(self) -> None:
        filter_class(self.filter)


def filter_class(path: str) -> type:
    """The datatrove filter class named by `path`; a wrong name or a non-filter is a ValueError naming it."""
    from datatrove.pipeline.filters.base_filter import BaseFilter

    module_name, _, class_name = path.partition(":") if ":" in path else path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ValueError(f"filter {path!r}: cannot import it ({err})") from None
    if not (isinstance(found, type) and issubclass(found, BaseFilter)):
        raise ValueError(f"filter {path!r} is not a datatrove BaseFilter subclass")  # noqa: TRY004 (a recipe value)
    return found


class DatatroveFilter(Stage):
    name = "datatrove_filter"
    Config = DatatroveFilterConfig
    requires = ("datatrove",)

    def setup(self) -> None:
        self._filter = filter_class(self.config.filter)(**self.config.kwargs)

    def process(self, batch: pa.RecordBatch, ctx: ShardContext) -> pa.RecordBatch:
        from datatrove.data import Document
        from datatrove.pipeline.filters.base_filter import get_filter_result

        rows = batch.select(["id", "text", "metadata"]).to_pylist()
        documents = [
            Document(text=row["text"], id=row["id"], metadata=json.loads(row["metadata"] or "{}")) for row in rows
        ]
        results = [get_filter_result(result) for result in self._filter.filter_batch(documents)]
        keep = np.array([bool(kept) for kept, _ in results])
        rules = RuleChain(batch.num_rows)
        reasons = np.array([reason or type(self._filter).__name__ for _, reason in results], dtype=object)
        for reason in dict.fromkeys(reasons[~keep]):
            rules.check(reason, ~keep & (reasons == reason), np.nan)
        changed = batch.set_column(
            batch.schema.get_field_index("text"), "text", pa.array([d.text for d in documents], pa.large_string())
        ).set_column(
            batch.schema.get_field_index("metadata"),
            "metadata",
            pa.array([json.dumps(d.metadata, ensure_ascii=False) for d in documents], pa.string()),
        )
        return apply_verdict(batch, rules.verdict(), ctx, changed)
