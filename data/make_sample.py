"""Rebuild data/sample/ and data/SOURCES.md: the small mixed-quality corpus of the quickstart and the tests.

The committed shards are the artifact; this script is the recipe, so anyone can see (and redo) where
every document came from. It reads text that ships in packages on a Debian 12 machine like the
project's (sample_python_sources.py, sample_debian_sources.py) and adds generated junk and re-crawls
(sample_generated.py).

Side effects: `apt-get download` of the man-page packages and `pip download --no-deps spacy==3.8.2`
into --work (default /tmp/gristmill-sample), unpacked there with `dpkg -x` and zipfile; nothing is
installed. Deterministic for a given machine image (seeded RNG, sorted walks, gzip mtime 0): a rerun
on the same image rewrites byte-identical files; another set of installed packages gives another mix.

Usage: python data/make_sample.py [--out data/sample] [--work /tmp/gristmill-sample]
"""

from __future__ import annotations

import argparse
import collections
import gzip
import io
import json
from pathlib import Path
from random import Random

import zstandard
from sample_debian_sources import common_licenses, debian_changelogs, debian_copyright_files, manpages
from sample_doc import Doc
from sample_generated import generated_junk, normalized_url, recrawls
from sample_python_sources import package_descriptions, package_license_files, spacy_examples, stdlib_docs

SEED = 20261125
SHARDS = (("part-00000.jsonl.zst", 0.27), ("part-00001.jsonl.zst", 0.27), ("part-00002.jsonl.zst", 0.26),
          ("part-00003.jsonl.gz", 0.15), ("part-00004.jsonl", 0.05))
ZSTD_LEVEL = 19
SOURCES_HEADER = Path(__file__).with_name("SOURCES.header.md")


def collect(work: Path, rng: Random) -> list[Doc]:
    """All documents in a fixed order; the counts aim at ~55% prose, 15% other languages, 15% dups, 15% junk."""
    docs = package_descriptions() + stdlib_docs(rng, prose=900, code=140) + debian_changelogs(rng, 70)
    docs += manpages(work, rng, per_language=55, english=150) + spacy_examples(work)
    docs += package_license_files() + common_licenses() + debian_copyright_files(rng, 40)
    docs = [doc for doc in docs if doc.text]
    return docs + recrawls(docs, rng, exact=80, near=60) + generated_junk(rng, 470)


def check_unique_urls(docs: list[Doc]) -> None:
    """Only planted duplicates may share a normalized URL, so URL dedup has an exact answer to test against."""
    seen: dict[str, Doc] = {}
    for doc in docs:
        if doc.dup_of is None and seen.setdefault(normalized_url(doc.url), doc) is not doc:
            raise ValueError(f"two documents share the URL {doc.url}: {seen[normalized_url(doc.url)].origin} and "
                             f"{doc.origin}")


def to_records(docs: list[Doc], rng: Random) -> list[dict]:
    """Shuffle (so every shard is a mixture and duplicates cross shards) and give ids in the new order."""
    docs = list(docs)
    rng.shuffle(docs)
    ids = {id(doc): f"gm-{position:05d}" for position, doc in enumerate(docs)}
    return [{"id": ids[id(doc)], "text": doc.text, "source": doc.source, "url": doc.url, "license": doc.license,
             "lang": doc.lang, "kind": doc.kind, "origin": doc.origin,
             "dup_of": None if doc.dup_of is None else ids[id(doc.dup_of)]} for doc in docs]


def encode(name: str, payload: bytes) -> bytes:
    """Compress by file suffix; gzip gets mtime 0 and no file name so reruns are byte-identical."""
    if name.endswith(".zst"):
        return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(payload)
    if name.endswith(".gz"):
        buffer = io.BytesIO()
        with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, filename="") as handle:
            handle.write(payload)
        return buffer.getvalue()
    return payload


def write_shards(records: list[dict], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    start = 0
    for index, (name, share) in enumerate(SHARDS):
        end = len(records) if index == len(SHARDS) - 1 else start + round(share * len(records))
        lines = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records[start:end])
        (out / name).write_bytes(encode(name, lines.encode()))
        start = end


def sources_table(docs: list[Doc]) -> str:
    """One row per (source, package, version, license): how many documents, and some of the files."""
    groups: dict[tuple[str, str, str, str], list[str]] = collections.defaultdict(list)
    for doc in docs:
        if doc.dup_of is None:
            groups[(doc.source, doc.package, doc.version, doc.license)].append(doc.path)
    rows = ["| source | package | version | license | docs | files (first 3) |", "|---|---|---|---|---|---|"]
    for (source, package, version, license_name), paths in sorted(groups.items()):
        shown = ", ".join(f"`{p}`" for p in sorted(paths)[:3]) + (", …" if len(paths) > 3 else "")
        rows.append(f"| {source} | {package} | {version} | {license_name} | {len(paths)} | {shown} |")
    return "\n".join(rows) + "\n"


def summary(records: list[dict]) -> str:
    """Counts by kind, by source and by language, as Markdown lists."""
    parts = []
    for field in ("kind", "source", "lang"):
        counts = collections.Counter(record[field] for record in records).most_common()
        parts.append(f"By {field}: " + ", ".join(f"{key} {count}" for key, count in counts) + ".")
    return "\n\n".join(parts) + "\n"


def write_sources(docs: list[Doc], records: list[dict], path: Path) -> None:
    header = SOURCES_HEADER.read_text()
    path.write_text(f"{header}\n## Counts\n\n{summary(records)}\n## Every source\n\n"
                    f"Re-crawled copies are left out of this table (they repeat a row above).\n\n{sources_table(docs)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "sample")
    parser.add_argument("--work", type=Path, default=Path("/tmp/gristmill-sample"))
    args = parser.parse_args()
    rng = Random(SEED)
    docs = collect(args.work, rng)
    check_unique_urls(docs)
    records = to_records(docs, rng)
    write_shards(records, args.out)
    write_sources(docs, records, args.out.parent / "SOURCES.md")
    print(f"wrote {len(records)} documents to {args.out}")


if __name__ == "__main__":
    main()
