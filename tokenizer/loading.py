"""A tokenizer.json loaded once per process, and the encoder the tokenize stage runs it with."""

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from gristmill.pipeline.errors import UserError
from gristmill.pipeline.log import get_logger
from gristmill.tokenizer.batch_encoder import IdEncoder, tokenizers_encoder
from gristmill.tokenizer.tiktoken_bpe import NotEquivalentError, tiktoken_encoder, tiktoken_encoding

if TYPE_CHECKING:
    from tokenizers import Tokenizer

log = get_logger(__name__)

EncoderChoice = Literal["auto", "tokenizers", "tiktoken"]


def load_tokenizer(path: str) -> tuple["Tokenizer", dict[str, int]]:
    """The tokenizer at `path`, set to encode whole documents, and its vocabulary (special tokens included).

    Loaded once per process and file version: the driver checks the recipe, runs shards (local executor) and
    finalizes with the same object instead of parsing a large tokenizer.json three times. Truncation is
    turned off whatever the file says, and special-token text inside a document is encoded as plain text, so
    EOS appears only where the stage puts it.
    """
    return _load_tokenizer(path, *_version(path))


def load_encoder(path: str, choice: EncoderChoice) -> tuple[IdEncoder, str]:
    """The encoder for the tokenizer at `path` and its name. `auto` takes tiktoken where it gives the same ids
    as `tokenizers` (see `tiktoken_bpe`), else `tokenizers`; naming one forces it."""
    return _load_encoder(path, *_version(path), choice)


def _version(path: str) -> tuple[int, int]:
    stat = Path(path).stat()
    return stat.st_mtime_ns, stat.st_size


@functools.lru_cache(maxsize=4)
def _load_tokenizer(path: str, mtime_ns: int, size: int) -> tuple["Tokenizer", dict[str, int]]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(path)
    tokenizer.no_truncation()
    tokenizer.no_padding()
    tokenizer.encode_special_tokens = True
    return tokenizer, tokenizer.get_vocab(with_added_tokens=True)


@functools.lru_cache(maxsize=4)
def _load_encoder(path: str, mtime_ns: int, size: int, choice: EncoderChoice) -> tuple[IdEncoder, str]:
    tokenizer, _ = _load_tokenizer(path, mtime_ns, size)
    if choice == "tokenizers":
        return tokenizers_encoder(tokenizer), "tokenizers"
    try:
        encoding = tiktoken_encoding(tokenizer)
    except NotEquivalentError as why:
        if choice == "tiktoken":
            raise UserError(f"encoder tiktoken cannot encode {path} as tokenizers does: {why}") from None
        log.info("encoding with tokenizers: tiktoken cannot stand in for %s (%s)", path, why)
        return tokenizers_encoder(tokenizer), "tokenizers"
    return tiktoken_encoder(encoding), "tiktoken"
