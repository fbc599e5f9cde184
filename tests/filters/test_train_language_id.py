"""Training a language-ID model on the sample corpus, the CLI around it, and scoring with what it saved."""

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from filter_helpers import SAMPLE, documents, run
from gristmill.filters import fasttext_model
from gristmill.filters.cli import app
from gristmill.filters.fasttext_training import chunks
from gristmill.filters.language_id import LanguageId, LanguageIdConfig
from gristmill.filters.train_language_id import (
    LanguageIdReport,
    TrainLanguageIdConfig,
    train_language_id,
)
from gristmill.pipeline.errors import UserError
from typer.testing import CliRunner

UNSEEN = {
    "en": "The library opens at nine in the morning, and children can borrow up to five books for two weeks.",
    "de": "Die Bibliothek öffnet um neun Uhr morgens, und Kinder dürfen bis zu fünf Bücher für zwei Wochen ausleihen.",
    "fr": "La bibliothèque ouvre à neuf heures et les enfants peuvent emprunter jusqu'à cinq livres pendant deux semaines.",
    "es": "La biblioteca abre a las nueve de la mañana y los niños pueden llevarse hasta cinco libros durante dos semanas.",
    "it": "La biblioteca apre alle nove del mattino e i bambini possono prendere in prestito fino a cinque libri.",
    "pl": "Biblioteka jest otwarta od dziewiątej rano, a dzieci mogą wypożyczyć do pięciu książek na dwa tygodnie.",
    "ru": "Библиотека открывается в девять утра, и дети могут взять до пяти книг на две недели.",
    "ja": "図書館は朝九時に開き、子どもは本を五冊まで二週間借りることができます。",
}


@pytest.fixture(scope="module")
def sample_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, LanguageIdReport]:
    """A model trained on all of data/sample with the command's defaults (a tenth held out)."""
    path = tmp_path_factory.mktemp("lid") / "lid-sample.bin"
    return path, train_language_id(TrainLanguageIdConfig(inputs=[str(SAMPLE)], output=path))


@pytest.fixture(scope="module")
def small_inputs(tmp_path_factory: pytest.TempPathFactory, lid_split) -> list[Path]:
    """German and French with `lang` in the metadata, Russian in a typed Parquet column, 4 Japanese, 3 unlabelled."""
    folder = tmp_path_factory.mktemp("small")
    by_language: dict[str, list[str]] = {}
    for lang, text in lid_split[0]:
        by_language.setdefault(lang, []).append(text)
    jsonl = folder / "labelled.jsonl"
    rows = [{"text": t, "lang": lang} for lang in ("de", "fr") for t in by_language[lang][:12]]
    rows += [{"text": t, "lang": "ja"} for t in by_language["ja"][:4]]
    rows += [{"text": t} for t in by_language["en"][:3]]
    jsonl.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    parquet = folder / "typed.parquet"
    pq.write_table(pa.table({"text": by_language["ru"][:12], "lang": ["ru"] * 12}), parquet)
    return [jsonl, parquet]


def test_held_out_accuracy_is_high_for_the_main_languages(sample_model) -> None:
    _, report = sample_model
    assert set(report.languages) == {*UNSEEN, "und"}
    assert report.left_out and max(report.left_out.values()) < 20
    assert report.unlabelled == 0 and report.held_out > 200
    assert report.accuracy >= 0.97
    scores = {s.label: s for s in report.per_language}
    assert list(scores) == list(report.languages)[:10]
    for lang in UNSEEN:
        assert scores[lang].support > 0
        assert scores[lang].precision >= 0.8 and scores[lang].recall >= 0.8, scores[lang]


def test_saved_model_drives_the_language_id_stage(sample_model) -> None:
    path, report = sample_model
    loaded = fasttext_model.load_model(path)
    assert {fasttext_model.label_name(label) for label in loaded.get_labels()} == set(report.languages)
    stage = LanguageId(LanguageIdConfig(model_path=path, languages=["en", "de"], min_score=0.5))
    stage.setup()
    kept, removed, _ = run(stage, documents(*UNSEEN.values()))
    assert kept.column("lang").to_pylist() == ["en", "de"]
    assert {removed[f"d{i}"][0] for i in range(2, len(UNSEEN))} == {f"language_{lang}" for lang in list(UNSEEN)[2:]}


def test_same_seed_gives_the_same_model(lid_model: Path, lid_train_file: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.bin"
    train_language_id(TrainLanguageIdConfig(inputs=[str(lid_train_file)], output=again, holdout_fraction=0.0))
    assert again.read_bytes() == lid_model.read_bytes()


def test_labels_from_metadata_and_typed_columns(small_inputs, tmp_path: Path) -> None:
    config = TrainLanguageIdConfig(
        inputs=[str(p) for p in small_inputs], output=tmp_path / "m.bin", min_docs_per_language=5, holdout_fraction=0.25
    )
    report = train_language_id(config)
    assert report.languages == {"de": 12, "fr": 12, "ru": 12}
    assert report.left_out == {"ja": 4}
    assert report.unlabelled == 3
    assert report.held_out == 9 and report.accuracy is not None


def test_cli_prints_accuracy_and_names_left_out_languages(small_inputs, tmp_path: Path) -> None:
    out = tmp_path / "cli.bin"
    result = CliRunner().invoke(
        app, ["train-langid", *map(str, small_inputs), "--output", str(out), "--min-docs-per-language", "5",
              "--holdout-fraction", "0.25"]
    )
    assert result.exit_code == 0, result.output
    assert "3 languages" in result.output and "skipped 3 without 'lang'" in result.output
    assert "left out 1 languages with fewer than 5 documents: ja (4)" in result.output
    assert "held-out accuracy" in result.output and out.is_file()


def test_no_labelled_documents_is_a_one_line_error(small_inputs, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["train-langid", str(small_inputs[0]), "--label-field", "language", "--output", str(tmp_path / "m.bin")]
    )
    assert isinstance(result.exception, UserError)
    assert "no documents with a 'language' label" in str(result.exception) and "\n" not in str(result.exception)


def test_too_few_documents_per_language_is_an_error(small_inputs, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no language has 50 documents .*de, has 12"):
        train_language_id(TrainLanguageIdConfig(inputs=[str(small_inputs[0])], output=tmp_path / "m.bin",
                                                min_docs_per_language=50))


def test_missing_input_prints_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder"
    command = ["filter", "train-langid", str(missing), "--output", str(tmp_path / "m.bin")]
    result = subprocess.run(
        [sys.executable, "-m", "gristmill.pipeline", *command], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"error: no input files match {str(missing)!r}"]


def test_bad_options_name_the_option(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="minn 5 and maxn 3"):
        TrainLanguageIdConfig(inputs=["x"], output=tmp_path / "m.bin", minn=5, maxn=3)
    result = CliRunner().invoke(app, ["train-langid", "x", "--min-docs-per-language", "0"])
    assert isinstance(result.exception, UserError) and "min_docs_per_language" in str(result.exception)


@pytest.mark.parametrize("size", [1, 7, 400])
def test_chunks_cut_at_spaces_and_keep_every_character(size: int) -> None:
    text = " ".join(["a", "bb", "ccc", "Bücher", "図書館は朝九時に開き", "x" * 300, "end"] * 5)
    pieces = chunks(f"  {text} ", size)
    assert all(0 < len(piece) <= size and piece == piece.strip() for piece in pieces)
    assert "".join(pieces).replace(" ", "") == text.replace(" ", "")
    if size >= 300:
        assert " ".join(pieces) == text and len(pieces) > 1
    assert chunks(text, 0) == [text]
