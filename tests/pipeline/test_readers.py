import gzip
import json
from pathlib import Path

import pyarrow as pa
import pytest

from gristmill.pipeline.errors import UserError
from gristmill.pipeline.readers import InputConfig, ReadErrors, expand_paths, read_documents
from gristmill.pipeline.side_output import SideOutput
from gristmill.pipeline.stats import StageStats
from gristmill.pipeline.writers import open_writer

from pipeline_helpers import make_documents


def read_all(path: Path, config: InputConfig | None = None, errors_path: Path | None = None):
    stats = StageStats(stage="read")
    side = SideOutput(errors_path) if errors_path else None
    batches = list(read_documents(str(path), config or InputConfig(), ReadErrors(stats, side)))
    if side:
        side.close()
    table = pa.Table.from_batches(batches) if batches else None
    return table, stats, batches


def test_jsonl_plain_gzip_zstd_read_the_same_documents(corpus: Path) -> None:
    for path in sorted(corpus.iterdir()):
        table, stats, batches = read_all(path, InputConfig(batch_size=16))
        assert table.num_rows == 60 and stats.docs_errors == 0
        assert all(b.num_rows <= 16 for b in batches)
        assert table.column("id")[0].as_py().endswith("-0")
        assert json.loads(table.column("metadata")[0].as_py())["url"].startswith("https://example.org/")
        assert table.column("source")[0].as_py() == path.name


@pytest.mark.parametrize("output_format", ["parquet", "jsonl", "arrow"])
def test_writers_round_trip_through_readers(tmp_path: Path, corpus: Path, output_format: str) -> None:
    source, _, _ = read_all(corpus / "part0.jsonl")
    source = source.append_column("lang", pa.array(["en"] * source.num_rows))
    writer = open_writer(output_format, tmp_path / "part-00000", source.schema)
    for batch in source.to_batches(max_chunksize=7):
        writer.write(batch)
    path = writer.close()
    assert not list(tmp_path.glob(".*.tmp")), "temporary file left behind"
    back, stats, _ = read_all(path)
    assert stats.docs_errors == 0
    assert back.column("text").to_pylist() == source.column("text").to_pylist()
    assert back.column("id").to_pylist() == source.column("id").to_pylist()
    if output_format != "jsonl":
        assert back.column("lang").to_pylist() == ["en"] * source.num_rows


def test_bad_records_are_counted_and_kept_raw(tmp_path: Path) -> None:
    lines = [
        b'{"id": "ok-1", "text": "fine"}',
        b'{"id": "broken", "text": "unterminated',
        b'{"id": "latin1", "text": "caf\xe9"}',
        b'{"id": "no-text"}',
        b'{"id": "number", "text": 42}',
        b'["not", "an", "object"]',
        b"",
        b'{"text": "no id here"}',
    ]
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    table, stats, _ = read_all(path, errors_path=tmp_path / "errors.parquet")
    assert table.column("id").to_pylist() == ["ok-1", "bad.jsonl:8"]
    assert dict(stats.errors) == {
        "malformed_json": 1,
        "invalid_utf8": 1,
        "missing_text": 1,
        "text_not_string": 1,
        "not_an_object": 1,
    }
    stats.docs_in += table.num_rows  # the runner counts good batches in and out
    stats.docs_out += table.num_rows
    stats.check_balance()
    errors = pa.parquet.read_table(tmp_path / "errors.parquet").to_pylist()
    assert [e["record"] for e in errors] == [2, 3, 4, 5, 6]
    assert errors[1]["raw"].rstrip(b"\n") == lines[2]


def test_empty_and_truncated_files_are_errors_not_crashes(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    _, stats, batches = read_all(empty)
    assert batches == [] and dict(stats.errors) == {"empty_file": 1}

    data = gzip.compress(b"".join(json.dumps(d).encode() + b"\n" for d in make_documents(200, "t")))
    truncated = tmp_path / "cut.jsonl.gz"
    truncated.write_bytes(data[: len(data) // 2])
    table, stats, _ = read_all(truncated)
    assert dict(stats.errors) == {"corrupt_file": 1}
    assert 0 < (table.num_rows if table else 0) < 200


def test_parquet_without_text_column_counts_every_row(tmp_path: Path) -> None:
    path = tmp_path / "notext.parquet"
    pa.parquet.write_table(pa.table({"body": ["a", "b", "c"]}), path)
    table, stats, _ = read_all(path)
    assert table is None and dict(stats.errors) == {"missing_text": 3}


def test_field_mapping_and_giant_document(tmp_path: Path) -> None:
    giant = "word " * 1_000_000
    path = tmp_path / "mapped.jsonl"
    path.write_text(json.dumps({"doc_id": 7, "content": giant, "source": "web"}) + "\n")
    table, stats, _ = read_all(path, InputConfig(text_field="content", id_field="doc_id"))
    assert table.column("id").to_pylist() == ["7"]
    assert table.column("source").to_pylist() == ["web"]
    assert len(table.column("text")[0].as_py()) == len(giant)


def test_paths_expand_globs_and_folders_and_reject_missing(corpus: Path) -> None:
    assert len(expand_paths([str(corpus / "*.jsonl")])) == 2
    assert len(expand_paths([str(corpus)])) == 4
    with pytest.raises(UserError, match="no input files match"):
        expand_paths([str(corpus / "nothing-*.jsonl")])


def test_fsspec_urls_are_read(corpus: Path) -> None:
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/corpus/a.jsonl", (corpus / "part0.jsonl").read_bytes())
    (url,) = expand_paths(["memory://corpus/*.jsonl"])
    assert url == "memory:///corpus/a.jsonl"
    table, stats, _ = read_all(url)
    assert table.num_rows == 60 and stats.docs_errors == 0


def test_reading_streams_in_bounded_memory(tmp_path: Path) -> None:
    """A 40 MB file read in batches of 64 never holds more than a few batches in Arrow memory."""
    line = json.dumps({"text": "x" * 4000}).encode() + b"\n"
    path = tmp_path / "big.jsonl"
    path.write_bytes(line * 10_000)
    stats = StageStats(stage="read")
    before = pa.total_allocated_bytes()
    peak = 0
    rows = 0
    for batch in read_documents(str(path), InputConfig(batch_size=64), ReadErrors(stats, None)):
        rows += batch.num_rows
        peak = max(peak, pa.total_allocated_bytes() - before)
        del batch
    assert rows == 10_000
    assert peak < 8 * 2**20, f"peak Arrow memory {peak / 2**20:.1f} MB above the start for 40 MB of input"


@pytest.mark.parametrize("suffix", [".parquet", ".arrow"])
def test_empty_and_corrupt_columnar_files_are_errors(tmp_path: Path, suffix: str) -> None:
    empty = pa.table({"text": pa.array([], pa.string())})
    writer = open_writer(suffix.lstrip("."), tmp_path / "empty", empty.schema)
    path = writer.close()
    _, stats, batches = read_all(path)
    assert batches == [] and dict(stats.errors) == {"empty_file": 1}
    corrupt = tmp_path / f"corrupt{suffix}"
    corrupt.write_bytes(b"this is not a columnar file at all" * 10)
    _, stats, batches = read_all(corrupt)
    assert batches == [] and dict(stats.errors) == {"corrupt_file": 1}
