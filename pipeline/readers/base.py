"""What all readers share: the input options, path expansion, format dispatch and the errors/ sink."""

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import fsspec
import pyarrow as pa

from gristmill.pipeline.errors import UserError
from gristmill.pipeline.side_output import SideOutput
from gristmill.pipeline.stats import StageStats

ERROR_SCHEMA = pa.schema(
    [
        pa.field("file", pa.string()),
        pa.field("record", pa.int64()),
        pa.field("kind", pa.string()),
        pa.field("error", pa.string()),
        pa.field("raw", pa.large_binary()),
    ]
)

FORMAT_BY_SUFFIX = {
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".arrow": "arrow",
    ".ipc": "arrow",
    ".feather": "arrow",
}
COMPRESSION_SUFFIXES = (".gz", ".zst", ".bz2", ".xz")


@dataclass(kw_only=True)
class InputConfig:
    """Where documents come from and which fields hold what."""

    paths: list[str] = field(default_factory=list)
    """Local paths, globs or fsspec URLs (s3://..., gs://...)."""
    format: Literal["auto", "jsonl", "parquet", "arrow"] = "auto"
    """`auto` picks by file extension."""
    text_field: str = "text"
    id_field: str = "id"
    """A record without this field gets the id `<file name>:<record number>`."""
    source: str | None = None
    """Value of the `source` column when a record has none; default: the file name."""
    batch_size: int = 2048
    """Documents per record batch: bounds memory together with the document sizes."""

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"input.batch_size must be >= 1, got {self.batch_size}")


class ReadErrors:
    """Counts unreadable records by kind and keeps each one, raw bytes included, in `errors/`."""

    def __init__(self, stats: StageStats, output: SideOutput | None) -> None:
        self.stats = stats
        self.output = output

    def add(self, file: str, record: int, kind: str, error: str, raw: bytes, count: int = 1) -> None:
        """Records `count` unusable records (one row in `errors/` stands for all of them)."""
        self.stats.docs_in += count
        self.stats.errors[kind] += count
        if self.output is not None:
            row = {"file": [file], "record": [record], "kind": [kind], "error": [error], "raw": [raw]}
            self.output.write(pa.RecordBatch.from_pydict(row, schema=ERROR_SCHEMA))


def expand_paths(patterns: list[str]) -> list[str]:
    """Sorted, de-duplicated files matching the patterns; a pattern that matches nothing is an error."""
    if not patterns:
        raise UserError("input.paths is empty: name at least one file or glob")
    files: set[str] = set()
    for pattern in patterns:
        fs, _, _ = fsspec.get_fs_token_paths(pattern)
        if fs.isdir(pattern):
            matches = [p for p in fs.find(pattern) if not Path(p).name.startswith((".", "_"))]
        else:
            matches = [p for p in fs.glob(pattern) if fs.isfile(p)]
        if not matches:
            raise UserError(f"no input files match {pattern!r}")
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        files.update(m if protocol in ("file", "local") else f"{protocol}://{m}" for m in matches)
    return sorted(files)


def detect_format(path: str, configured: str) -> str:
    if configured != "auto":
        return configured
    name = Path(path).name
    for suffix in COMPRESSION_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    fmt = FORMAT_BY_SUFFIX.get(Path(name).suffix)
    if fmt is None:
        raise UserError(f"{path}: cannot tell the format from the extension; set input.format")
    return fmt


def read_documents(path: str, config: InputConfig, errors: ReadErrors) -> Iterator[pa.RecordBatch]:
    """Streams `path` as document batches; unreadable records go to `errors`, never stop the run."""
    from gristmill.pipeline.readers.arrow_ipc import read_arrow
    from gristmill.pipeline.readers.jsonl import read_jsonl
    from gristmill.pipeline.readers.parquet import read_parquet

    readers = {"jsonl": read_jsonl, "parquet": read_parquet, "arrow": read_arrow}
    yield from readers[detect_format(path, config.format)](path, config, errors)
