"""A byte-level BPE tokenizer.json encoded by tiktoken: the same ids for about a third of the CPU per token.

Most of `tokenizers`' encode time goes to what the stage throws away (normalized strings, offsets, `Encoding`
objects); tiktoken returns bare ids. The two agree when the file is a plain byte-level BPE: no normalizer, a
byte-level pre-tokenizer (GPT-2's split pattern, or a `Split` regex ahead of a byte-level step that adds none),
merges whose products get increasing ids (tiktoken merges by the id of the merged token, `tokenizers` by merge
order), every byte in the vocabulary, and only special added tokens (which the stage encodes as plain text).
`tiktoken_encoding` checks that, then encodes a probe (every vocabulary entry alone, and all of them run
together) with both and requires identical ids.
"""

import json
import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import chain
from typing import TYPE_CHECKING, Any

from gristmill.tokenizer.batch_encoder import IdEncoder, encoder_threads

if TYPE_CHECKING:
    import tiktoken
    from tokenizers import Tokenizer

GPT2_SPLIT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
"""The byte-level pre-tokenizer's own split (`use_regex`)."""

PROBE_RUN = 64
"""Vocabulary entries per probe text that runs them together, so merges across them are exercised."""


class NotEquivalentError(ValueError):
    """The tokenizer is not one tiktoken encodes identically; the message says which part differs."""


def byte_of_char() -> dict[str, int]:
    """The byte-level alphabet: printable Latin-1 bytes stand for themselves, the other 68 for chr(256 + i)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [byte for byte in range(256) if byte not in printable]
    return {chr(byte): byte for byte in printable} | {chr(256 + i): byte for i, byte in enumerate(others)}


def split_pattern(pre_tokenizer: dict[str, Any] | None) -> str:
    """The regex that cuts text into the pieces BPE merges within."""
    if pre_tokenizer is None:
        raise NotEquivalentError("it has no pre-tokenizer")
    kind = pre_tokenizer.get("type")
    if kind == "ByteLevel" and pre_tokenizer.get("use_regex", True) and not pre_tokenizer.get("add_prefix_space"):
        return GPT2_SPLIT
    steps = pre_tokenizer.get("pretokenizers", [])
    if kind == "Sequence" and len(steps) == 2:
        split, byte_level = steps
        regex = split.get("pattern", {}).get("Regex")
        if (split.get("type") == "Split" and regex is not None and split.get("behavior") == "Isolated"
                and not split.get("invert") and byte_level.get("type") == "ByteLevel"
                and not byte_level.get("use_regex", True) and not byte_level.get("add_prefix_space")):
            return regex
    raise NotEquivalentError(f"its pre-tokenizer is not a plain byte-level one: {pre_tokenizer}")


def merge_pairs(model: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for merge in model.get("merges", []):
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        yield left, right


def mergeable_ranks(spec: dict[str, Any]) -> dict[bytes, int]:
    """Each vocabulary entry's bytes and id (special tokens apart), after checking merge order matches id order."""
    model = spec.get("model", {})
    if model.get("type") != "BPE" or model.get("dropout") or model.get("continuing_subword_prefix") or \
            model.get("end_of_word_suffix"):
        raise NotEquivalentError("its model is not a plain BPE (type, dropout or subword affixes)")
    if spec.get("normalizer") is not None:
        raise NotEquivalentError(f"it has a normalizer: {spec['normalizer'].get('type')}")
    added = spec.get("added_tokens", [])
    if not all(token.get("special") for token in added):
        raise NotEquivalentError("it has non-special added tokens, which tokenizers matches inside text")
    vocab: dict[str, int] = model["vocab"]
    last = -1
    for left, right in merge_pairs(model):
        merged = vocab.get(left + right, -1)
        if merged <= last:
            raise NotEquivalentError(f"merge {left!r} + {right!r} makes id {merged}, not above the previous merge's")
        last = merged
    specials = {token["content"] for token in added}
    alphabet = byte_of_char()
    try:
        ranks = {bytes(alphabet[char] for char in token): rank
                 for token, rank in vocab.items() if token not in specials}
    except KeyError as missing:
        raise NotEquivalentError(f"a vocabulary entry has {missing}, outside the byte-level alphabet") from None
    if not all(bytes([byte]) in ranks for byte in range(256)):
        raise NotEquivalentError("not every byte is in its vocabulary")
    return ranks


def probe_texts(ranks: dict[bytes, int]) -> list[str]:
    """Every vocabulary entry alone, then all of them run together, in id order and in a seeded shuffle."""
    entries = [token for token, _ in sorted(ranks.items(), key=lambda item: item[1])]
    shuffled = random.Random(0).sample(entries, len(entries))
    runs = [b"".join(order[i:i + PROBE_RUN]) for order in (entries, shuffled)
            for i in range(0, len(order), PROBE_RUN)]
    return [text.decode("utf-8", errors="replace") for text in entries + runs]


def tiktoken_encoding(tokenizer: "Tokenizer") -> "tiktoken.Encoding":
    """tiktoken's encoder for `tokenizer` (set to encode special tokens as text), read from the tokenizer's own
    serialization; raises NotEquivalentError if it would give other ids."""
    try:
        import tiktoken
    except ImportError:
        raise NotEquivalentError("tiktoken is not installed (pip install tiktoken)") from None
    spec = json.loads(tokenizer.to_str())
    ranks = mergeable_ranks(spec)
    encoding = tiktoken.Encoding("gristmill", pat_str=split_pattern(spec.get("pre_tokenizer")),
                                 mergeable_ranks=ranks, special_tokens={})
    probe = probe_texts(ranks)
    expected = tokenizer.encode_batch(probe, add_special_tokens=False)
    for text, ids, reference in zip(probe, tiktoken_encoder(encoding)(probe), expected):
        if ids != reference.ids:
            raise NotEquivalentError(f"tiktoken's ids differ from tokenizers' on {text[:60]!r}")
    return encoding


def tiktoken_encoder(encoding: "tiktoken.Encoding") -> IdEncoder:
    """Encodes a batch in `encoder_threads()` contiguous slices, one thread each (tiktoken releases the GIL
    while it encodes). Slices, not one task per text as `encode_ordinary_batch` does: that costs more than
    encoding a short text."""
    encode = encoding.encode_ordinary

    def encode_slice(texts: list[str]) -> list[list[int]]:
        return [encode(text) for text in texts]

    def encode_batch(texts: list[str]) -> list[list[int]]:
        threads = min(encoder_threads(), len(texts))
        if threads <= 1:
            return encode_slice(texts)
        step = -(-len(texts) // threads)
        with ThreadPoolExecutor(threads) as pool:
            slices = pool.map(encode_slice, [texts[i:i + step] for i in range(0, len(texts), step)])
            return list(chain.from_iterable(slices))

    return encode_batch
