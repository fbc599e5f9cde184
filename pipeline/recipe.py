"""A pipeline recipe: reader options, stages with their options, output and executor (one TOML file).

```toml
[input]
paths = ["data/sample/*.jsonl*"]

[output]
path = "out/sample"

[executor]
kind = "local"
workers = 2

[[stages]]
type = "gopher_quality"       # a catalog name or "package.module:Class"
min_doc_words = 50            # options go beside `type`; `name` sets the output folder
```
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from gristmill.pipeline.config import build_config, load_toml
from gristmill.pipeline.errors import UserError
from gristmill.pipeline.executors import ExecutorConfig
from gristmill.pipeline.readers import InputConfig
from gristmill.pipeline.registry import resolve_stage
from gristmill.pipeline.shard_task import StageSpec

RESERVED_FOLDERS = {"read", "done", "stats", "removed", "errors"}


@dataclass(kw_only=True)
class OutputConfig:
    path: str = "out"
    """Run folder: one sub-folder per stage, with part-XXXXX files, stats.json and side outputs."""
    format: Literal["parquet", "jsonl"] = "parquet"
    """Format of the final documents (between stages it is always parquet)."""
    keep_removed: bool = True
    """Keep removed documents with their reason in `<stage>/removed/` (for `gristmill report`)."""


@dataclass(kw_only=True)
class Recipe:
    input: InputConfig = field(default_factory=InputConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    stages: list[dict[str, Any]] = field(default_factory=list)

    def stage_specs(self) -> list[StageSpec]:
        """The stages with unique folder names, each built once here so a bad option fails before work."""
        specs: list[StageSpec] = []
        used: set[str] = set(RESERVED_FOLDERS)
        for index, entry in enumerate(self.stages):
            options = dict(entry)
            type_name = options.pop("type", None)
            if not isinstance(type_name, str):
                raise UserError(f"stages[{index}]: missing `type` (the stage to run)")
            name = str(options.pop("name", resolve_stage(type_name).name))
            base, suffix = name, 2
            while name in used:
                name, suffix = f"{base}_{suffix}", suffix + 1
            used.add(name)
            spec = StageSpec(name=name, type=type_name, options=options)
            spec.build()
            specs.append(spec)
        return specs


def load_recipe(path: str | Path, overrides: dict[str, dict[str, Any]] | None = None) -> Recipe:
    """Reads a recipe file; `overrides` (from CLI flags) replace keys inside its tables."""
    data = load_toml(path)
    for table, values in (overrides or {}).items():
        data.setdefault(table, {}).update({k: v for k, v in values.items() if v is not None})
    return build_config(Recipe, data)
