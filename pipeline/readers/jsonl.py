"""JSONL reader (plain, .gz, .zst, ...): one JSON object per line, streamed line by line."""

import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import fsspec
import orjson
import pyarrow as pa
import zstandard

from gristmill.pipeline.readers.base import InputConfig, ReadErrors
from gristmill.pipeline.schema import DOCUMENT_SCHEMA


class _Columns:
    """Accumulates one batch worth of document columns."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.texts: list[str] = []
        self.sources: list[str] = []
        self.metadata: list[str] = []

    def __len__(self) -> int:
        return len(self.ids)

    def batch(self) -> pa.RecordBatch:
        arrays = [
            pa.array(self.ids, pa.string()),
            pa.array(self.texts, pa.large_string()),
            pa.array(self.sources, pa.string()),
            pa.array(self.metadata, pa.string()),
        ]
        return pa.RecordBatch.from_arrays(arrays, schema=DOCUMENT_SCHEMA)


def read_jsonl(path: str, config: InputConfig, errors: ReadErrors) -> Iterator[pa.RecordBatch]:
    name = Path(path).name
    default_source = config.source or name
    columns = _Columns()
    line_no = 0
    try:
        with _open_lines(path) as handle:
            for line_no, line in enumerate(handle, 1):
                record = line.strip()
                if not record:
                    continue
                try:
                    doc_id, text, source, metadata = _parse(record, config, f"{name}:{line_no}", default_source)
                except _BadRecord as bad:
                    errors.add(path, line_no, bad.kind, bad.message, bytes(line))
                    continue
                columns.ids.append(doc_id)
                columns.texts.append(text)
                columns.sources.append(source)
                columns.metadata.append(metadata)
                if len(columns) >= config.batch_size:
                    yield columns.batch()
                    columns = _Columns()
    except (OSError, EOFError, ValueError) as err:
        errors.add(path, line_no + 1, "corrupt_file", f"{type(err).__name__}: {err}", b"")
    else:
        if line_no == 0:
            errors.add(path, 0, "empty_file", "the file holds no records", b"")
    if len(columns):
        yield columns.batch()


@contextmanager
def _open_lines(path: str) -> Iterator[io.BufferedIOBase]:
    """A binary stream that iterates by line; zstd through a buffered reader, since fsspec's cannot."""
    if path.endswith(".zst"):
        with fsspec.open(path, "rb") as raw:
            reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
            yield io.BufferedReader(reader, buffer_size=1 << 20)
    else:
        with fsspec.open(path, "rb", compression="infer") as handle:
            yield handle


class _BadRecord(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind, self.message = kind, message


def _parse(record: bytes, config: InputConfig, fallback_id: str, default_source: str) -> tuple[str, str, str, str]:
    """The document's id, text, source and metadata; raises _BadRecord when the record is unusable."""
    try:
        obj = orjson.loads(record)
    except orjson.JSONDecodeError as err:
        raise _BadRecord("invalid_utf8" if "UTF-8" in str(err) else "malformed_json", str(err)) from None
    if not isinstance(obj, dict):
        raise _BadRecord("not_an_object", f"expected a JSON object, got {type(obj).__name__}")
    text = obj.pop(config.text_field, None)
    if text is None:
        raise _BadRecord("missing_text", f"no field {config.text_field!r}")
    if not isinstance(text, str):
        raise _BadRecord("text_not_string", f"field {config.text_field!r} is {type(text).__name__}, not a string")
    doc_id = obj.pop(config.id_field, None)
    source = obj.pop("source", None)
    metadata = orjson.dumps(obj).decode() if obj else "{}"
    return (
        fallback_id if doc_id is None else str(doc_id),
        text,
        default_source if source is None else str(source),
        metadata,
    )
