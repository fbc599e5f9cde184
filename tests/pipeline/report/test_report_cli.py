import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from gristmill.pipeline.errors import UserError
from gristmill.pipeline.report.cli import report


def invoke(*args: str):
    app = typer.Typer()
    app.command()(report)
    return CliRunner().invoke(app, [str(arg) for arg in args])


def test_writes_the_default_and_a_chosen_file(report_run, tmp_path: Path) -> None:
    metrics = tmp_path / "train" / "metrics.jsonl"
    metrics.parent.mkdir()
    metrics.write_text("".join(json.dumps({"step": s, "loss": 5.0 / s, "lr": 1e-3}) + "\n" for s in range(1, 30)))
    chosen = tmp_path / "pages" / "run.html"

    result = invoke(report_run.out, "-o", chosen, "--metrics", metrics)

    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"report: {chosen}"
    page = chosen.read_text()
    assert page.startswith("<!DOCTYPE html>") and "Training run: metrics.jsonl" in page
    assert not list(chosen.parent.glob(".*.tmp"))
    assert invoke(report_run.out).exit_code == 0
    assert (report_run.out / "report.html").is_file()


def test_training_folder_alone(tmp_path: Path) -> None:
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 3.0}) + "\n")
    assert invoke(tmp_path).exit_code == 0
    assert "No pipeline stats in this folder." in (tmp_path / "report.html").read_text()


@pytest.mark.parametrize("make", [lambda root: root / "missing", lambda root: root], ids=["missing", "empty"])
def test_not_a_run_folder_is_a_user_error(tmp_path: Path, make) -> None:
    folder = make(tmp_path)
    result = invoke(folder)
    assert isinstance(result.exception, UserError)
    assert str(folder) in str(result.exception) and "\n" not in str(result.exception)
