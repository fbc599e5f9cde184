"""Loading fastText models and preparing text for them, shared by language ID and quality scoring."""

import re
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from gristmill.pipeline.errors import UserError

LABEL_PREFIX = "__label__"
PUNCTUATION_RUN = r"([\pP\pS]+)"


def check_model_path(path: Path, option: str) -> None:
    """Fails before any work when the model file is missing (a FileNotFoundError naming the path)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{option}: no such fastText model file: {path}")


def load_model(path: Path):
    """The fastText model at `path`; a corrupt or foreign file is a UserError naming the path."""
    import fasttext

    check_model_path(path, "model_path")
    try:
        return fasttext.load_model(str(path))
    except (ValueError, RuntimeError, MemoryError) as err:
        raise UserError(f"{path} is not a fastText model file ({err})") from None


def one_line(texts: pa.Array) -> list[str]:
    """fastText reads one example per line: newlines become spaces."""
    return pc.replace_substring_regex(texts, r"[\r\n]+", " ").to_pylist()


def normalize(texts: pa.Array) -> list[str]:
    """The quality classifier's view of text (DCLM recipe): lowercase, punctuation split off, one line.

    Training and scoring both call this, so a model always sees text prepared the same way.
    """
    lowered = pc.utf8_lower(texts)
    spaced = pc.replace_substring_regex(lowered, PUNCTUATION_RUN, r" \1 ")
    return pc.replace_substring_regex(spaced, r"\s+", " ").to_pylist()


def label_name(label: str) -> str:
    return label.removeprefix(LABEL_PREFIX)


def labelled(label: str) -> str:
    if not re.fullmatch(r"\S+", label):
        raise ValueError(f"a fastText label must be one word without spaces, got {label!r}")
    return label if label.startswith(LABEL_PREFIX) else LABEL_PREFIX + label
