"""Documents to one flat token array with EOS after each, and the size of the encoder's thread pool.

One encoder call per record batch. Measured on tokenizers 0.23 (bench/results/tokenize.md): splitting a batch
into smaller calls, to read one part out while the next encodes, costs more CPU per token than it hides. Which
call is faster depends on the process's memory allocator: under glibc malloc `encode_batch_fast` (no offsets)
is ~30% slower than `encode_batch`; under jemalloc (LD_PRELOAD) it is 15-20% faster.
"""

import functools
import os
from collections.abc import Callable, Sequence
from itertools import chain, repeat
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gristmill.pipeline.log import get_logger

if TYPE_CHECKING:
    from tokenizers import Encoding, Tokenizer

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


@functools.cache
def jemalloc_loaded() -> bool:
    """Whether this process allocates with jemalloc (only found through LD_PRELOAD or a linked library)."""
    maps = Path("/proc/self/maps")
    return maps.is_file() and "libjemalloc" in maps.read_text(encoding="utf-8", errors="replace")


def encoder_call(tokenizer: "Tokenizer") -> Callable[..., list["Encoding"]]:
    """The faster of `encode_batch` and `encode_batch_fast` under this process's allocator; same ids."""
    fast = getattr(tokenizer, "encode_batch_fast", None)  # tokenizers >= 0.21
    return fast if fast is not None and jemalloc_loaded() else tokenizer.encode_batch


IdEncoder = Callable[[list[str]], list[list[int]]]
"""Texts to their token ids, no special tokens added."""


def tokenizers_encoder(tokenizer: "Tokenizer") -> IdEncoder:
    """`tokenizers`' parallel batch encoder; only the ids outlive the call (an `Encoding` holds ~100 bytes a
    token)."""
    call = encoder_call(tokenizer)
    return lambda texts: [encoding.ids for encoding in call(texts, add_special_tokens=False)]


def encoder_threads() -> int:
    """The encoder pool's size: RAYON_NUM_THREADS (set by `set_encoder_threads` and the executors), else the
    cores this process may use."""
    configured = os.environ.get("RAYON_NUM_THREADS", "")
    if configured.isdigit() and int(configured) > 0:
        return int(configured)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def encode_with_eos(encode: IdEncoder, texts: Sequence[str], *, eos: int, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """(tokens, lengths): each document's ids followed by `eos`, all in one `dtype` array, and each document's
    token count without its EOS (0 for a text the tokenizer maps to nothing).

    Documents are encoded whole, in parallel; the ids go straight into the array with EOS interleaved, in one
    pass.
    """
    id_lists = encode(list(texts))
    lengths = np.fromiter(map(len, id_lists), dtype=np.int64, count=len(id_lists))
    with_eos = chain.from_iterable(chain.from_iterable(zip(id_lists, repeat([eos]))))
    return np.fromiter(with_eos, dtype=dtype, count=int(lengths.sum()) + len(id_lists)), lengths
