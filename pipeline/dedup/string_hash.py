"""64-bit hashes of Arrow string arrays without a Python loop per string.

`hash_strings` is for many short, repeating strings (words, lines): it hashes each distinct value
once, as a polynomial over its UTF-8 bytes evaluated with numpy, then mixes it. `xxhash_strings`
is for whole documents and URLs, where a collision would delete a document: it runs xxh3 over each
string's bytes, one call per string, straight from the Arrow buffer.
"""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

_POLY_BASE = np.uint64(0x100000001B3)
_CHUNK_BYTES = 1 << 21


def mix64(values: np.ndarray) -> np.ndarray:
    """The splitmix64 finalizer: every input bit affects every output bit (uint64 in, uint64 out)."""
    values = values ^ (values >> np.uint64(30))
    values = values * np.uint64(0xBF58476D1CE4E5B9)
    values ^= values >> np.uint64(27)
    values *= np.uint64(0x94D049BB133111EB)
    values ^= values >> np.uint64(31)
    return values


def string_buffers(strings: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets as int64 [n + 1], bytes as uint8) of a string array, without copying the bytes."""
    if pa.types.is_dictionary(strings.type):
        raise TypeError("decode the dictionary first")
    if strings.null_count:
        strings = pc.fill_null(strings, "")
    offset_type = np.int64 if pa.types.is_large_string(strings.type) or pa.types.is_large_binary(strings.type) else np.int32
    _, offsets_buffer, data_buffer = strings.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=offset_type)[strings.offset : strings.offset + len(strings) + 1]
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else np.zeros(0, np.uint8)
    return offsets.astype(np.int64), data


def _polynomial_hashes(offsets: np.ndarray, data: np.ndarray) -> np.ndarray:
    """sum(byte_j * BASE**(len - 1 - j)) mod 2**64 per string, in chunks of about 2 MiB of bytes."""
    count = len(offsets) - 1
    hashes = np.zeros(count, dtype=np.uint64)
    lengths = np.diff(offsets)
    if count == 0 or int(lengths.max()) == 0:
        return hashes
    powers = np.cumprod(np.full(int(lengths.max()), _POLY_BASE, dtype=np.uint64))
    powers = np.concatenate([np.ones(1, np.uint64), powers[:-1]])
    start = 0
    while start < count:
        stop = max(int(np.searchsorted(offsets, offsets[start] + _CHUNK_BYTES, side="right")) - 1, start + 1)
        stop = min(stop, count)
        chunk_lengths = lengths[start:stop]
        nonempty = np.flatnonzero(chunk_lengths)
        if len(nonempty):
            lo, hi = offsets[start], offsets[stop]
            owner = np.repeat(np.arange(stop - start), chunk_lengths)
            from_end = offsets[start + 1 : stop + 1][owner] - 1 - np.arange(lo, hi)
            terms = (data[lo:hi].astype(np.uint64) + np.uint64(1)) * powers[from_end]
            firsts = (offsets[start:stop] - lo)[nonempty]
            hashes[start + nonempty] = np.add.reduceat(terms, firsts)
        start = stop
    return mix64(hashes ^ mix64(lengths.astype(np.uint64)))


def hash_strings(strings: pa.Array) -> np.ndarray:
    """A mixed 64-bit hash per string; equal strings get equal hashes. Each distinct value is hashed once."""
    if len(strings) == 0:
        return np.zeros(0, dtype=np.uint64)
    encoded = pc.dictionary_encode(pc.fill_null(strings, "") if strings.null_count else strings)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    offsets, data = string_buffers(encoded.dictionary)
    distinct = _polynomial_hashes(offsets, data)
    return distinct[encoded.indices.to_numpy(zero_copy_only=False)]


def xxhash_strings(strings: pa.Array, seed: int = 0) -> np.ndarray:
    """xxh3-64 of every string's UTF-8 bytes (nulls hash as empty strings)."""
    offsets, data = string_buffers(strings)
    view = memoryview(data)
    digest = xxhash.xxh3_64_intdigest
    return np.fromiter(
        (digest(view[start:stop], seed) for start, stop in zip(offsets[:-1].tolist(), offsets[1:].tolist())),
        dtype=np.uint64,
        count=len(strings),
    )
