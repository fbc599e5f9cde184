"""The document schema every reader produces and every stage consumes (DESIGN.md, Conventions)."""

import pyarrow as pa
import pyarrow.compute as pc

DOCUMENT_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("text", pa.large_string(), nullable=False),
        pa.field("source", pa.string()),
        pa.field("metadata", pa.string()),
    ]
)


def text_bytes(batch: pa.RecordBatch) -> int:
    """UTF-8 bytes of the text column: the unit of the `bytes_in` / `bytes_out` stats."""
    if batch.num_rows == 0 or "text" not in batch.schema.names:
        return 0
    return int(pc.sum(pc.binary_length(batch.column("text"))).as_py() or 0)


def empty_documents() -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist([], schema=DOCUMENT_SCHEMA)
