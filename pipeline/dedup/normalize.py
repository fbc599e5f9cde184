"""Text normalization before hashing, vectorized with Arrow compute (RE2 regexes over whole batches)."""

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc


@dataclass(kw_only=True)
class TextNormalization:
    """What counts as "the same text": each option erases one kind of difference before hashing."""

    unicode: bool = True
    """NFKC: full-width, ligature and compatibility forms become their plain equivalents."""
    lowercase: bool = True
    punctuation: bool = False
    """Punctuation and symbols become spaces."""
    digits: bool = False
    """Every decimal digit becomes 0 (dates, counters and prices stop mattering)."""
    whitespace: bool = True
    """Runs of whitespace become one space; leading and trailing whitespace is dropped."""


def normalize_text(text: pa.Array, config: TextNormalization) -> pa.Array:
    """The normalized form of every string in `text`."""
    if config.unicode:
        text = pc.utf8_normalize(text, form="NFKC")
    if config.lowercase:
        text = pc.utf8_lower(text)
    if config.punctuation:
        text = pc.replace_substring_regex(text, r"[\p{P}\p{S}]+", " ")
    if config.digits:
        text = pc.replace_substring_regex(text, r"\p{Nd}", "0")
    if config.whitespace:
        # Same result as r"\s+", twice as fast: single spaces, the common case, are left alone.
        text = pc.utf8_trim_whitespace(pc.replace_substring_regex(text, r"\s\s+|[\t\n\v\f\r]", " "))
    return text
