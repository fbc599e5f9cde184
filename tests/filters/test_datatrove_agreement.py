"""Each heuristic filter against datatrove's own implementation on real documents of the sample corpus.

Decisions differ only where the word split differs from spaCy's (see filters/text_stats.py); the
full-corpus comparison with every differing document listed is bench/results/filters.md.
"""

import pyarrow as pa
import pytest
from filter_helpers import run
from gristmill.filters.c4 import C4Quality
from gristmill.filters.fineweb import FineWebQuality
from gristmill.filters.gopher_quality import GopherQuality
from gristmill.filters.gopher_repetition import GopherRepetition

PAIRS = [
    (GopherQuality, "GopherQualityFilter", 0.95),
    (GopherRepetition, "GopherRepetitionFilter", 0.95),
    (C4Quality, "C4QualityFilter", 0.97),
    (FineWebQuality, "FineWebQualityFilter", 0.97),
]


@pytest.fixture(scope="module")
def corpus_slice(sample_documents: pa.Table) -> pa.RecordBatch:
    """Every tenth document of the sample corpus (about 300): prose, code, junk, eight languages."""
    return sample_documents.take(list(range(0, sample_documents.num_rows, 10))).combine_chunks().to_batches()[0]


@pytest.mark.parametrize("ours, theirs, min_agreement", PAIRS, ids=[pair[1] for pair in PAIRS])
def test_decisions_agree_with_datatrove(ours, theirs: str, min_agreement: float, corpus_slice: pa.RecordBatch) -> None:
    import datatrove.pipeline.filters as datatrove_filters
    from datatrove.data import Document

    step = getattr(datatrove_filters, theirs)()
    expected = [step.filter(Document(text=row["text"], id=row["id"])) is True for row in corpus_slice.to_pylist()]
    _, removed, _ = run(ours(), corpus_slice)
    got = [doc not in removed for doc in corpus_slice.column("id").to_pylist()]
    agreement = sum(a == b for a, b in zip(got, expected)) / len(expected)
    assert agreement >= min_agreement
    assert 0 < sum(expected) < len(expected)
