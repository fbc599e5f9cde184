"""A 50 MB document goes through every heuristic filter in linear time and bounded memory."""

import random
import resource

import pytest
from filter_helpers import documents, run
from gristmill.filters.c4 import C4Quality
from gristmill.filters.fineweb import FineWebQuality
from gristmill.filters.gopher_quality import GopherQuality
from gristmill.filters.gopher_repetition import GopherRepetition

GIANT_BYTES = 50 * 2**20


@pytest.fixture(scope="module")
def giant_text() -> str:
    """About 50 MB of sentences over a 2,000-word vocabulary, 12 words a line."""
    rng = random.Random(random.randrange(2**31))
    vocabulary = [f"word{i}" for i in range(2000)] + ["the", "and", "of", "with"]
    line = " ".join(rng.choices(vocabulary, k=1_000_000))
    text = (line + ".\n") * (GIANT_BYTES // len(line) + 1)
    return text[:GIANT_BYTES]


@pytest.mark.parametrize("stage", [GopherQuality(), GopherRepetition(), C4Quality(), FineWebQuality()],
                         ids=lambda stage: stage.name)
def test_giant_document_beside_a_small_one(stage, giant_text: str) -> None:
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kept, removed, stats = run(stage, documents(giant_text, "A small document."))
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert stats.docs_in == 2 and kept.num_rows + len(removed) == 2
    assert grown_mb < 20 * GIANT_BYTES / 2**20, f"{stage.name} grew the peak memory by {grown_mb:.0f} MB"


def test_language_id_on_a_giant_document(giant_text: str, lid_model) -> None:
    from gristmill.filters.language_id import LanguageId, LanguageIdConfig

    stage = LanguageId(LanguageIdConfig(model_path=lid_model, languages=[], min_score=0.0))
    stage.setup()
    kept, _, _ = run(stage, documents(giant_text, "Der Hund schläft."))
    assert kept.num_rows == 2 and kept.column("lang_score")[0].as_py() > 0
