"""Readers: stream documents from JSONL (plain, .gz, .zst), Parquet and Arrow IPC as record batches."""

from gristmill.pipeline.readers.base import InputConfig, ReadErrors, expand_paths, read_documents

__all__ = ["InputConfig", "ReadErrors", "expand_paths", "read_documents"]
