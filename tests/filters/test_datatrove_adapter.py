"""The datatrove adapter: real datatrove filters as gristmill stages, with their decisions, reasons and edits."""

import pyarrow as pa
import pytest
from filter_helpers import documents, run
from gristmill.filters.datatrove_adapter import DatatroveFilter, DatatroveFilterConfig

pytest.importorskip("datatrove")


def datatrove_decisions(step, table: pa.Table) -> dict[str, object]:
    from datatrove.data import Document

    decisions = {}
    for row in table.to_pylist():
        doc = Document(text=row["text"], id=row["id"])
        result = step.filter(doc)
        decisions[row["id"]] = doc.text if result is True else result[1]
    return decisions


@pytest.mark.parametrize(
    "path, kwargs",
    [
        ("datatrove.pipeline.filters:GopherQualityFilter", {"min_doc_words": 40}),
        ("datatrove.pipeline.filters.c4_filters.C4QualityFilter", {"filter_no_terminal_punct": False}),
    ],
    ids=["gopher_quality", "c4_quality"],
)
def test_same_decisions_and_text_as_datatrove_itself(path: str, kwargs: dict, sample_documents: pa.Table) -> None:
    from gristmill.filters.datatrove_adapter import filter_class

    table = sample_documents.slice(0, 120)
    stage = DatatroveFilter(DatatroveFilterConfig(filter=path, kwargs=kwargs))
    stage.setup()
    kept, removed, stats = run(stage, table.to_batches(max_chunksize=1000)[0])
    expected = datatrove_decisions(filter_class(path)(**kwargs), table)
    got = dict(zip(kept.column("id").to_pylist(), kept.column("text").to_pylist()))
    got.update({doc: reason for doc, (reason, _) in removed.items()})
    assert got == expected
    assert 0 < stats.docs_removed < table.num_rows


def test_metadata_changes_come_back() -> None:
    stage = DatatroveFilter(DatatroveFilterConfig(filter="datatrove.pipeline.filters:LambdaFilter", kwargs={
        "filter_function": lambda doc: doc.metadata.setdefault("seen", True) and "spam" not in doc.text
    }))
    stage.setup()
    kept, removed, _ = run(stage, documents("good text", "spam text", metadata=[{"url": "a"}, {}]))
    assert kept.column("metadata").to_pylist() == ['{"url": "a", "seen": true}']
    assert removed == {"d1": ("LambdaFilter", None)}  # datatrove gave no reason: the class name stands in


@pytest.mark.parametrize("path", ["datatrove.pipeline.filters:NoSuchFilter", "json:dumps", "nowhere.module:Filter"])
def test_a_wrong_class_path_names_it(path: str) -> None:
    with pytest.raises(ValueError, match=path.replace(".", r"\.")):
        DatatroveFilterConfig(filter=path)
