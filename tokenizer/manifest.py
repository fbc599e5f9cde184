"""manifest.json of a token dataset: what the shards hold and how to check them, in one typed record.

The manifest is the only thing a trainer trusts before it maps a shard, so reading it checks every field by
name and the totals against the per-shard counts; a mismatch is a ValueError naming the file and field.
"""

import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import xxhash

FORMAT = "gristmill-tokens/1"
MANIFEST_NAME = "manifest.json"
COMPRESSIONS = (None, "lz4")


def shard_schema(dtype: str) -> pa.Schema:
    """The columns every shard holds; `tokens` already ends with EOS, `num_tokens` is its length."""
    return pa.schema(
        [("id", pa.string()), ("tokens", pa.list_(pa.from_numpy_dtype(np.dtype(dtype)))), ("num_tokens", pa.int32())]
    )


def shard_file_name(index: int) -> str:
    """`part-00042.arrow`: shard `index` of a token dataset (the pipeline names its shards the same way)."""
    return f"part-{index:05d}.arrow"


def token_dtype(vocab_size: int) -> str:
    """The narrowest unsigned type holding every token id below `vocab_size`."""
    if not 0 < vocab_size <= 2**32:
        raise ValueError(f"vocab_size must be in 1..2**32, got {vocab_size}")
    return "uint16" if vocab_size <= 2**16 else "uint32"


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in chunks so a shard of any size hashes in constant memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 23):
            digest.update(chunk)
    return digest.hexdigest()


def id_in_fraction(doc_id: str, *, fraction: float, seed: int) -> bool:
    """Whether a document falls in a seeded `fraction` of all ids: a hash of the id, so membership never
    depends on shard layout, order or executor."""
    return xxhash.xxh64_intdigest(doc_id.encode("utf-8"), seed=seed) < fraction * 2**64


def validation_mask(doc_ids: Sequence[str], *, validation_fraction: float, seed: int) -> np.ndarray:
    """Which of `doc_ids` belong to the validation split of a manifest with this fraction and seed."""
    return np.fromiter(
        (id_in_fraction(d, fraction=validation_fraction, seed=seed) for d in doc_ids),
        dtype=bool,
        count=len(doc_ids),
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class ShardEntry:
    """One shard file as written; `bytes` catches truncation at open, `sha256` any corruption on request."""

    file: str
    num_documents: int
    num_tokens: int
    bytes: int
    sha256: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class SpecialIds:
    eos: int
    bos: int | None = None
    pad: int | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class TokenManifest:
    """Everything `manifest.json` records; totals are derived from the shards so they cannot disagree."""

    tokenizer_file: str | None
    tokenizer_sha256: str | None
    vocab_size: int
    special_ids: SpecialIds
    shards: tuple[ShardEntry, ...]
    compression: str | None = None
    validation_fraction: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        token_dtype(self.vocab_size)
        if self.compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {COMPRESSIONS}, got {self.compression!r}")
        if not 0.0 <= self.validation_fraction <= 1.0:
            raise ValueError(f"validation_fraction must be in [0, 1], got {self.validation_fraction}")
        for name, value in dataclasses.asdict(self.special_ids).items():
            if value is not None and not 0 <= value < self.vocab_size:
                raise ValueError(f"special id {name}={value} is outside the vocabulary (size {self.vocab_size})")

    @property
    def dtype(self) -> str:
        return token_dtype(self.vocab_size)

    @property
    def num_documents(self) -> int:
        return sum(s.num_documents for s in self.shards)

    @property
    def num_tokens(self) -> int:
        return sum(s.num_tokens for s in self.shards)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "tokenizer": {"file": self.tokenizer_file, "sha256": self.tokenizer_sha256},
            "vocab_size": self.vocab_size,
            "special_ids": {"bos": self.special_ids.bos, "eos": self.special_ids.eos, "pad": self.special_ids.pad},
            "dtype": self.dtype,
            "num_documents": self.num_documents,
            "num_tokens": self.num_tokens,
            "compression": self.compression,
            "shards": [dataclasses.asdict(s) for s in self.shards],
            "split": {"validation_fraction": self.validation_fraction, "seed": self.seed},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str) -> "TokenManifest":
        """Parses and cross-checks manifest JSON; `where` (the file) prefixes every error."""
        fields = _Fields(data, where)
        if fields.get("format", str) != FORMAT:
            raise ValueError(f"{where}: format {data['format']!r} is not {FORMAT!r}")
        tokenizer = _Fields(fields.get("tokenizer", dict), f"{where}: tokenizer")
        special = _Fields(fields.get("special_ids", dict), f"{where}: special_ids")
        split = _Fields(fields.get("split", dict), f"{where}: split")
        shards = []
        for i, raw in enumerate(fields.get("shards", list)):
            entry = _Fields(raw, f"{where}: shards[{i}]")
            shards.append(ShardEntry(**{f.name: entry.get(f.name, f.type) for f in dataclasses.fields(ShardEntry)}))
        try:
            manifest = cls(
                tokenizer_file=tokenizer.get("file", str, optional=True),
                tokenizer_sha256=tokenizer.get("sha256", str, optional=True),
                vocab_size=fields.get("vocab_size", int),
                special_ids=SpecialIds(
                    eos=special.get("eos", int),
                    bos=special.get("bos", int, optional=True),
                    pad=special.get("pad", int, optional=True),
                ),
                shards=tuple(shards),
                compression=fields.get("compression", str, optional=True),
                validation_fraction=float(split.get("validation_fraction", (int, float))),
                seed=split.get("seed", int),
            )
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None
        for name, kind in (("dtype", str), ("num_documents", int), ("num_tokens", int)):
            recorded, derived = fields.get(name, kind), getattr(manifest, name)
            if recorded != derived:
                raise ValueError(f"{where}: {name} is {recorded!r} but the shards and vocab_size give {derived!r}")
        return manifest


class _Fields:
    """Typed access to one JSON object, with errors that name the file and the key."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected an object, got {data!r}")
        self.data, self.where = data, where

    def get(self, key: str, kind: type | tuple[type, ...], *, optional: bool = False) -> Any:
        if key not in self.data:
            raise ValueError(f"{self.where}: missing key {key!r}")
        value = self.data[key]
        if value is None and optional:
            return None
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ValueError(f"{self.where}: {key} has the wrong type: {value!r}")
        return value


def write_manifest(directory: str | Path, manifest: TokenManifest) -> Path:
    """Writes `manifest.json` atomically (temp name, then rename): it is the dataset's completion marker."""
    path = Path(directory) / MANIFEST_NAME
    temporary = path.with_name(f".{MANIFEST_NAME}.tmp")
    temporary.write_text(json.dumps(manifest.to_json(), indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)
    return path


def read_manifest(directory: str | Path) -> TokenManifest:
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no token dataset at {directory}: {path} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    return TokenManifest.from_json(data, str(path))
