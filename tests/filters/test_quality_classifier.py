"""Training a fastText quality classifier, the CLI around it, and scoring with it: a round trip."""

import json
from pathlib import Path

import pyarrow as pa
import pytest
from filter_helpers import documents, run
from gristmill.filters.cli import app
from gristmill.filters.quality_classifier import (
    QualityClassifier,
    QualityClassifierConfig,
)
from gristmill.filters.train_classifier import TrainClassifierConfig, train_classifier
from gristmill.pipeline.errors import UserError
from typer.testing import CliRunner


@pytest.fixture(scope="module")
def labelled_files(tmp_path_factory: pytest.TempPathFactory, sample_documents: pa.Table) -> tuple[Path, Path]:
    """English prose of the sample corpus as positives; its generated junk (spam, menus, gibberish) as negatives."""
    folder = tmp_path_factory.mktemp("quality")
    good, bad = [], []
    for text, metadata in zip(sample_documents.column("text").to_pylist(), sample_documents.column("metadata").to_pylist()):
        info = json.loads(metadata)
        if info.get("kind") == "junk":
            bad.append(text)
        elif info.get("kind") == "prose" and len(good) < 400:
            good.append(text)
    paths = folder / "good.jsonl", folder / "bad.jsonl"
    for path, texts in zip(paths, (good, bad)):
        path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    assert len(bad) >= 30, "the sample corpus should hold generated junk"
    return paths


@pytest.fixture(scope="module")
def trained(labelled_files, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    good, bad = labelled_files
    model = tmp_path_factory.mktemp("model") / "quality.bin"
    scores = train_classifier(
        TrainClassifierConfig(positive=[str(good)], negative=[str(bad)], output=model, epochs=10, dim=32, holdout_fraction=0.2)
    )
    return model, scores


def test_training_reports_held_out_scores(trained) -> None:
    model, scores = trained
    assert model.is_file()
    assert scores.examples > 0
    assert scores.f1 >= 0.8


def test_scoring_adds_quality_and_keeps_good_documents(trained, labelled_files) -> None:
    model, _ = trained
    good = json.loads(labelled_files[0].read_text().splitlines()[-1])["text"]
    bad = json.loads(labelled_files[1].read_text().splitlines()[-1])["text"]
    stage = QualityClassifier(QualityClassifierConfig(model_path=model, min_score=0.5))
    stage.setup()
    kept, removed, _ = run(stage, documents(good, bad))
    assert kept.column("id").to_pylist() == ["d0"]
    assert kept.column("quality")[0].as_py() > 0.5
    assert removed["d1"][0] == "low_quality" and removed["d1"][1] < 0.5


def test_top_fraction_keeps_the_best_of_a_batch(trained, labelled_files) -> None:
    model, _ = trained
    texts = [json.loads(line)["text"] for path in labelled_files for line in path.read_text().splitlines()[:10]]
    stage = QualityClassifier(QualityClassifierConfig(model_path=model, min_score=None, top_fraction=0.25))
    stage.setup()
    kept, removed, _ = run(stage, documents(*texts))
    assert kept.num_rows == 5 and len(removed) == 15
    assert min(kept.column("quality").to_pylist()) >= max(value for _, value in removed.values())


def test_unknown_positive_label_is_an_error(trained) -> None:
    stage = QualityClassifier(QualityClassifierConfig(model_path=trained[0], positive_label="good"))
    with pytest.raises(ValueError, match="'good'"):
        stage.setup()


def test_config_needs_exactly_one_selection(trained) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        QualityClassifierConfig(model_path=trained[0], min_score=0.5, top_fraction=0.1)


def test_cli_trains_and_prints_scores(labelled_files, tmp_path: Path) -> None:
    good, bad = labelled_files
    out = tmp_path / "cli.bin"
    result = CliRunner().invoke(
        app, ["train-classifier", "--positive", str(good), "--negative", str(bad), "--output", str(out),
              "--epochs", "2", "--dim", "16"]
    )
    assert result.exit_code == 0, result.output
    assert "precision" in result.output and out.is_file()


def test_cli_names_a_bad_option(labelled_files, tmp_path: Path) -> None:
    good, bad = labelled_files
    result = CliRunner().invoke(
        app, ["train-classifier", "--positive", str(good), "--negative", str(bad), "--output", str(tmp_path / "m.bin"),
              "--epochs", "0"]
    )
    assert isinstance(result.exception, UserError) and "epochs" in str(result.exception)
