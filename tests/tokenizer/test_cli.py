from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from gristmill.pipeline.errors import UserError
from gristmill.tokenizer import tokenize_stage
from gristmill.tokenizer.cli import app, tokenize
from gristmill.tokenizer.shard_format import TokenDataset


@pytest.fixture
def tokenize_app() -> typer.Typer:
    """`tokenize` mounted the way the root CLI mounts it."""
    mounted = typer.Typer(pretty_exceptions_enable=False)
    mounted.command()(tokenize)
    return mounted


def test_train_then_tokenize_a_stage_folder(tmp_path: Path, small_corpus: Path, tokenize_app: typer.Typer,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[int] = []
    monkeypatch.setattr(tokenize_stage, "set_encoder_threads", threads.append)
    (small_corpus / "removed").mkdir()
    (small_corpus / "removed" / "part-00000.parquet").write_bytes(b"side output, not input")
    trained = CliRunner().invoke(app, ["train", str(small_corpus), "-o", str(tmp_path / "tok.json"),
                                       "--vocab-size", "300", "--pad-token", ""])
    assert trained.exit_code == 0, trained.output
    result = CliRunner().invoke(tokenize_app, [str(small_corpus), "--tokenizer", str(tmp_path / "tok.json"),
                                               "-o", str(tmp_path / "out"), "--shuffle", "--seed", "3",
                                               "--encode-threads", "2", "--encoder", "tokenizers"])
    assert result.exit_code == 0, result.output
    assert f"token dataset: {tmp_path / 'out/tokenize/dataset'}" in result.output
    dataset = TokenDataset(tmp_path / "out/tokenize/dataset")
    assert len(dataset) == 117 and dataset.manifest.seed == 3
    assert set(threads) == {2}


def test_bad_option_is_a_user_error(tmp_path: Path, small_corpus: Path) -> None:
    result = CliRunner().invoke(app, ["train", str(small_corpus), "-o", str(tmp_path / "t.json"),
                                      "--sample-fraction", "2"])
    assert isinstance(result.exception, UserError) and "sample_fraction" in str(result.exception)


def test_an_unknown_encoder_is_named(tmp_path: Path, small_corpus: Path, tokenizer_file: Path,
                                     tokenize_app: typer.Typer) -> None:
    result = CliRunner().invoke(tokenize_app, [str(small_corpus), "--tokenizer", str(tokenizer_file),
                                               "-o", str(tmp_path / "out"), "--encoder", "sentencepiece"])
    assert isinstance(result.exception, UserError)
    assert "encoder: 'sentencepiece' is not one of 'auto', 'tokenizers', 'tiktoken'" in str(result.exception)
