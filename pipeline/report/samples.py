"""A few example documents per removal rule, per duplicate cluster and per read error, truncated.

Side outputs are scanned batch by batch and the scan stops as soon as every rule has its examples, so
a report never holds more than one batch of a corpus. Text stays raw here; the template escapes it.
"""

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from gristmill.pipeline.report.outputs import cluster_files, error_files, iter_columns, kept_files, removed_files

SAMPLE_CHARS = 600
"""Characters of each example shown; the rest is cut (and the page says so)."""


@dataclass
class Sample:
    """One example document (or unreadable record), cut to `SAMPLE_CHARS`."""

    id: str
    text: str
    chars: int
    """Length of the whole text, in characters."""
    source: str | None = None
    value: float | None = None
    """The filter's measured value (or, for dedup, the cluster key) when it recorded one."""
    kept: bool = False

    @property
    def truncated(self) -> bool:
        return self.chars > len(self.text)


@dataclass
class ClusterSample:
    cluster: int
    size: int
    members: list[Sample] = field(default_factory=list)
    """The kept document first (when found), then removed ones."""


def _sample(row: dict, max_chars: int) -> Sample:
    text = row.get("text") or ""
    return Sample(id=row["id"], text=text[:max_chars], chars=len(text), source=row.get("source"),
                  value=row.get("value"))


def removed_samples(
    stage_dir: Path, reasons: list[str] | None, per_reason: int = 3, max_chars: int = SAMPLE_CHARS
) -> dict[str, list[Sample]]:
    """Up to `per_reason` removed documents for each of `reasons` (all reasons seen when None), first come."""
    found: dict[str, list[Sample]] = {reason: [] for reason in reasons or []}
    taken: Counter = Counter()
    for batch in iter_columns(removed_files(stage_dir), ["id", "text", "source", "reason", "value"]):
        rows = []
        for row, reason in enumerate(batch.column("reason").to_pylist()):
            if (reasons is None or reason in found) and taken[reason] < per_reason:
                taken[reason] += 1
                rows.append(row)
        for record in batch.take(pa.array(rows, pa.int64())).to_pylist():
            found.setdefault(record["reason"], []).append(_sample(record, max_chars))
        if reasons is not None and all(taken[reason] >= per_reason for reason in reasons):
            break
    return found


def _find_documents(files: list[Path], ids: set[str], max_chars: int) -> dict[str, Sample]:
    """The documents with these ids, scanning batch by batch and stopping once all are found."""
    found: dict[str, Sample] = {}
    if not ids:
        return found
    wanted = pa.array(sorted(ids), pa.string())
    for batch in iter_columns(files, ["id", "text", "source"]):
        matches = batch.filter(pc.is_in(batch.column("id"), value_set=wanted))
        found.update((record["id"], _sample(record, max_chars)) for record in matches.to_pylist())
        if len(found) == len(ids):
            break
    return found


def cluster_samples(
    stage_dir: Path, sizes: Counter, clusters: int = 3, members: int = 3, max_chars: int = SAMPLE_CHARS
) -> list[ClusterSample]:
    """The `clusters` largest duplicate clusters (`sizes`: cluster key -> documents), each with its kept
    document and up to `members` removed ones."""
    chosen = {key: ClusterSample(cluster=key, size=size) for key, size in sizes.most_common(clusters)}
    if not chosen:
        return []
    kept_ids: dict[int, str] = {}
    removed_ids: dict[int, list[str]] = {key: [] for key in chosen}
    keys = pa.array(list(chosen), pa.int64())
    for batch in iter_columns(cluster_files(stage_dir), ["id", "cluster", "kept"]):
        for record in batch.filter(pc.is_in(batch.column("cluster"), value_set=keys)).to_pylist():
            if record["kept"]:
                kept_ids[record["cluster"]] = record["id"]
            elif len(removed_ids[record["cluster"]]) < members:
                removed_ids[record["cluster"]].append(record["id"])
    kept_docs = _find_documents(kept_files(stage_dir), set(kept_ids.values()), max_chars)
    removed_docs = _find_documents(removed_files(stage_dir), {i for ids in removed_ids.values() for i in ids}, max_chars)
    for key, sample in chosen.items():
        if key in kept_ids and kept_ids[key] in kept_docs:
            sample.members.append(kept_docs[kept_ids[key]])
            sample.members[0].kept = True
        sample.members += [removed_docs[i] for i in removed_ids[key] if i in removed_docs]
    return list(chosen.values())


def error_samples(stage_dir: Path, per_kind: int = 3, max_chars: int = SAMPLE_CHARS) -> dict[str, list[Sample]]:
    """Up to `per_kind` unreadable records per error kind, raw bytes decoded leniently; id is `file:record`."""
    found: dict[str, list[Sample]] = {}
    for batch in iter_columns(error_files(stage_dir), ["file", "record", "kind", "error", "raw"]):
        for record in batch.to_pylist():
            chosen = found.setdefault(record["kind"], [])
            if len(chosen) < per_kind:
                raw = (record["raw"] or b"").decode("utf-8", errors="replace")
                chosen.append(Sample(id=f"{record['file']}:{record['record']}", text=raw[:max_chars],
                                     chars=len(raw), source=record["error"]))
    return found
