"""Documents to one flat token array with EOS after each, and the size of the encoder's thread pool.

One `encode_batch` call per record batch. Measured on tokenizers 0.23 (bench/results/tokenize.md): splitting a
batch into smaller calls, to read one part out while the next encodes, costs more CPU per token than it hides
(each call ends in an idle tail and allocates anew), and `encode_batch_fast` is slower than `encode_batch`.
"""

import os
from collections.abc import Sequence
from itertools import chain, repeat
from typing import TYPE_CHECKING

import numpy as np

from gristmill.pipeline.log import get_logger

if TYPE_CHECKING:
    from tokenizers import Tokenizer

log = get_logger(__name__)

_applied_threads: int | None = None


def set_encoder_threads(threads: int) -> None:
    """Sizes the `tokenizers` Rayon pool through RAYON_NUM_THREADS, its only control.

    The pool is built at the first parallel encode of a process and keeps its size, so this works in a fresh
    executor worker; a process that already applied another size warns instead.
    """
    global _applied_threads
    if threads < 1:
        raise ValueError(f"encoder threads must be >= 1, got {threads}")
    if _applied_threads is not None and _applied_threads != threads:
        log.warning("encode_threads=%d ignored: this process already encodes with %d threads", threads,
                    _applied_threads)
        return
    os.environ["RAYON_NUM_THREADS"] = str(threads)
    _applied_threads = threads


def encode_with_eos(tokenizer: "Tokenizer", texts: Sequence[str], *, eos: int, dtype: str
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(tokens, lengths): each document's ids followed by `eos`, all in one `dtype` array, and each document's
    token count without its EOS (0 for a text the tokenizer maps to nothing).

    Documents are encoded whole, in parallel; the ids go straight from the encodings into the array, EOS
    interleaved, without an intermediate list per document or a second pass to insert EOS.
    """
    encodings = tokenizer.encode_batch(list(texts), add_special_tokens=False)
    id_lists = [encoding.ids for encoding in encodings]
    del encodings
    lengths = np.fromiter(map(len, id_lists), dtype=np.int64, count=len(id_lists))
    with_eos = chain.from_iterable(chain.from_iterable(zip(id_lists, repeat([eos]))))
    return np.fromiter(with_eos, dtype=dtype, count=int(lengths.sum()) + len(id_lists)), lengths
