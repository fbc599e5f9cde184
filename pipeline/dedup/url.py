"""URL dedup: documents of the same normalized URL (a field of the metadata JSON) keep one copy.

The kept copy is the longest text or the newest date (a metadata field, ISO 8601); ties and
documents without a date fall back to the earliest document. Documents without a URL (or whose
metadata is not a JSON object) are kept.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from gristmill.pipeline.dedup.keyed import DocumentKeys, KeyedDedup
from gristmill.pipeline.dedup.options import ShuffleOptions
from gristmill.pipeline.dedup.string_hash import xxhash_strings

_URL_PARTS = r"^\s*(?:[a-zA-Z][a-zA-Z0-9+.-]*://)?(?:www\.)?(?P<host>[^/?#:]*)(?::(?:80|443))?(?P<rest>[^#]*)"


@dataclass(kw_only=True)
class UrlDedupConfig(ShuffleOptions):
    field: str = "url"
    """Metadata field holding the URL."""
    keep: Literal["longest", "newest"] = "longest"
    date_field: str = "date"
    """Metadata field with the document's date, for keep = "newest"."""


def normalize_urls(urls: pa.Array) -> pa.Array:
    """One spelling per page: no scheme, no `www.`, lowercase host, no default port, fragment, tracking
    parameters (utm_*) or trailing slash."""
    parts = pc.extract_regex(urls, _URL_PARTS)
    host = pc.utf8_lower(pc.struct_field(parts, "host"))
    rest = pc.replace_substring_regex(pc.struct_field(parts, "rest"), r"([?&])utm_[^&]*(&|$)", r"\1")
    rest = pc.replace_substring_regex(pc.replace_substring_regex(rest, r"[?&]+$", ""), r"/+(\?|$)", r"\1")
    return pc.binary_join_element_wise(host, rest, "")


def _metadata_fields(metadata: pa.Array, names: tuple[str, ...]) -> list[list[object]]:
    """The values of top-level fields `names` of every metadata JSON string (None where absent or unreadable)."""
    columns: list[list[object]] = [[] for _ in names]
    for text in metadata.to_pylist():
        try:
            record = orjson.loads(text) if text else {}
        except orjson.JSONDecodeError:
            record = {}
        if not isinstance(record, dict):
            record = {}
        for column, name in zip(columns, names):
            column.append(record.get(name))
    return columns


def _timestamps(values: list[object]) -> np.ndarray:
    """Seconds since the epoch of ISO 8601 dates; -inf where missing or unparsable."""
    stamps = np.full(len(values), -np.inf)
    for index, value in enumerate(values):
        if isinstance(value, str):
            try:
                stamps[index] = datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return stamps


class UrlDedup(KeyedDedup):
    name = "url_dedup"
    Config = UrlDedupConfig
    reason = "url_duplicate"

    def document_keys(self, batch: pa.RecordBatch) -> DocumentKeys:
        config = self.config
        urls, dates = _metadata_fields(batch.column("metadata"), (config.field, config.date_field))
        url_array = pa.array([url if isinstance(url, str) and url.strip() else None for url in urls], pa.string())
        normalized = normalize_urls(url_array)
        valid = pc.fill_null(pc.greater(pc.utf8_length(normalized), 0), False).to_numpy(zero_copy_only=False)
        if config.keep == "longest":
            priority = pc.binary_length(batch.column("text")).to_numpy(zero_copy_only=False).astype(np.float64)
        else:
            priority = _timestamps(dates)
        return DocumentKeys(key=xxhash_strings(normalized), valid=valid, priority=priority)
