"""MinHash dedup on hand-made corpora: chains across shards, exact copies, no false merges, options."""

import json
import random
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from gristmill.pipeline.dedup.minhash.config import MinHashConfig
from gristmill.pipeline.dedup.minhash.shingles import shingle_hashes
from gristmill.pipeline.dedup.minhash.stage import MinHashDedup
from gristmill.pipeline.errors import UserError

from dedup_helpers import (
    clusters_by_id,
    edit_words,
    kept_ids,
    random_text,
    removed_rows,
    run_stage,
    write_shards,
)


def jaccard(first: str, second: str, config: MinHashConfig) -> float:
    import pyarrow as pa

    hashes, offsets = shingle_hashes(pa.array([first, second], pa.large_string()), config)
    a, b = set(hashes[: offsets[1]].tolist()), set(hashes[offsets[1] :].tolist())
    return len(a & b) / len(a | b)


def test_chain_across_shards_is_one_cluster_kept_at_its_earliest(tmp_path: Path) -> None:
    rng = random.Random()
    chain = [random_text(rng, 150)]
    for _ in range(9):
        chain.append(edit_words(rng, chain[-1], 1))
    assert jaccard(chain[0], chain[-1], MinHashConfig()) < 0.75
    unrelated = [random_text(rng, 150) for _ in range(30)]
    docs = [{"id": f"chain-{i}", "text": t} for i, t in enumerate(chain)] + [
        {"id": f"other-{i}", "text": t} for i, t in enumerate(unrelated)
    ]
    rng.shuffle(docs)
    shards = [docs[0::3], docs[1::3], docs[2::3]]
    outputs = run_stage(MinHashDedup(MinHashConfig(partitions=3)), write_shards(tmp_path / "in", shards), tmp_path / "mh")
    earliest = next(d["id"] for shard in shards for d in shard if d["id"].startswith("chain-"))
    kept = kept_ids(outputs)
    assert [i for i in kept if i.startswith("chain-")] == [earliest]
    assert len(kept) == 31
    clusters = clusters_by_id(tmp_path / "mh")
    assert sorted(clusters) == sorted(f"chain-{i}" for i in range(10)) and len(set(clusters.values())) == 1
    stats = json.loads((tmp_path / "mh" / "stats.json").read_text())
    assert stats["docs_in"] == 40 and stats["docs_out"] == 31 and stats["removed"] == {"minhash_duplicate": 9}
    removed = removed_rows(tmp_path / "mh")
    assert {row["value"] for row in removed} == set(clusters.values())
    summary = json.loads((tmp_path / "mh" / "cluster_stats.json").read_text())
    assert summary["clusters"] == 1 and summary["cluster_sizes"] == {"10": 1} and summary["removed"] == 9


def test_exact_copies_collapse_and_unrelated_documents_never_merge(tmp_path: Path) -> None:
    rng = random.Random()
    texts = [random_text(rng, rng.randrange(20, 300)) for _ in range(200)]
    copies = [{"id": f"copy-{i}", "text": texts[i]} for i in range(0, 200, 10)]
    originals = [{"id": f"doc-{i}", "text": t} for i, t in enumerate(texts)]
    inputs = write_shards(tmp_path / "in", [originals[:100], copies, originals[100:], [{"id": "empty", "text": ""}]])
    kept = kept_ids(run_stage(MinHashDedup(MinHashConfig()), inputs, tmp_path / "mh"))
    later_copies = {f"copy-{i}" for i in range(0, 100, 10)} | {f"doc-{i}" for i in range(100, 200, 10)}
    everything = {d["id"] for d in originals + copies} | {"empty"}
    assert kept == sorted(everything - later_copies)
    assert {row["id"] for row in removed_rows(tmp_path / "mh")} == later_copies


def test_keep_highest_keeps_the_best_scored_member(tmp_path: Path) -> None:
    rng = random.Random()
    base = random_text(rng, 200)
    docs = [{"id": f"v{i}", "text": edit_words(rng, base, 1), "quality": q} for i, q in enumerate([0.2, 0.9, 0.5])]
    inputs = write_shards(tmp_path / "in", [[d] for d in docs])
    outputs = run_stage(MinHashDedup(MinHashConfig(keep_highest="quality")), inputs, tmp_path / "mh")
    assert kept_ids(outputs) == ["v1"]
    with pytest.raises(UserError, match="no column 'score'"):
        run_stage(MinHashDedup(MinHashConfig(keep_highest="score")), inputs, tmp_path / "bad")


def test_verify_drops_candidates_below_the_jaccard_threshold(tmp_path: Path) -> None:
    rng = random.Random()
    base = random_text(rng, 300)
    near, far = edit_words(rng, base, 2), edit_words(rng, base, 14)
    loose = {"bands": 30, "rows": 2, "partitions": 2}
    assert jaccard(base, near, MinHashConfig()) > 0.9 and 0.5 < jaccard(base, far, MinHashConfig()) < 0.8
    inputs = write_shards(tmp_path / "in", [[{"id": "base", "text": base}], [{"id": "near", "text": near}, {"id": "far", "text": far}]])
    assert kept_ids(run_stage(MinHashDedup(MinHashConfig(**loose)), inputs, tmp_path / "plain")) == ["base"]
    verified = MinHashDedup(MinHashConfig(**loose, verify=True, jaccard_threshold=0.8))
    assert kept_ids(run_stage(verified, inputs, tmp_path / "verified")) == ["base", "far"]


def test_rerun_with_other_options_is_refused(tmp_path: Path) -> None:
    inputs = write_shards(tmp_path / "in", [[{"id": "a", "text": "some words here"}]])
    run_stage(MinHashDedup(MinHashConfig()), inputs, tmp_path / "mh")
    with pytest.raises(UserError, match="other inputs or options"):
        run_stage(MinHashDedup(MinHashConfig(ngram=3)), inputs, tmp_path / "mh")


def test_sample_corpus_planted_near_duplicates_share_a_cluster(tmp_path: Path, sample_corpus: list[Path]) -> None:
    outputs = run_stage(MinHashDedup(MinHashConfig(partitions=4)), sample_corpus, tmp_path / "mh")
    clusters = clusters_by_id(tmp_path / "mh")
    planted = []
    for path in sample_corpus:
        for row in pq.read_table(path, columns=["id", "metadata"]).to_pylist():
            meta = json.loads(row["metadata"])
            if meta.get("kind") == "near_dup":
                planted.append((row["id"], meta["dup_of"]))
    found = [clusters.get(a) is not None and clusters.get(a) == clusters.get(b) for a, b in planted]
    assert len(planted) >= 50 and np.mean(found) >= 0.95
    assert sum(pq.read_metadata(path).num_rows for path in outputs) < sum(pq.read_metadata(p).num_rows for p in sample_corpus)


def test_verify_splits_a_chain_whose_ends_are_not_duplicates(tmp_path: Path) -> None:
    rng = random.Random()
    config = MinHashConfig(bands=30, rows=2, verify=True, jaccard_threshold=0.8)
    first = random_text(rng, 400).split()
    middle = [f"edited{i}" if i in range(20, 200, 40) else word for i, word in enumerate(first)]
    last = [f"changed{i}" if i in range(220, 400, 40) else word for i, word in enumerate(middle)]
    first, middle, last = " ".join(first), " ".join(middle), " ".join(last)
    assert jaccard(first, middle, config) > 0.85 and jaccard(middle, last, config) > 0.85
    assert jaccard(first, last, config) < 0.8
    inputs = write_shards(tmp_path / "in", [[{"id": "a", "text": first}], [{"id": "b", "text": middle}], [{"id": "c", "text": last}]])
    assert kept_ids(run_stage(MinHashDedup(config), inputs, tmp_path / "mh")) == ["a", "c"]
    assert kept_ids(run_stage(MinHashDedup(MinHashConfig(bands=30, rows=2)), inputs, tmp_path / "plain")) == ["a"]


def test_character_shingles_find_near_duplicates_without_spaces(tmp_path: Path) -> None:
    rng = random.Random()
    letters = "abcdefghijklmnopqrstuvwxyz"
    base = "".join(rng.choice(letters) for _ in range(2000))
    edited = base[:700] + "Z" + base[701:1400] + "Q" + base[1401:]
    other = "".join(rng.choice(letters) for _ in range(2000))
    config = MinHashConfig(shingle="chars", ngram=5)
    inputs = write_shards(tmp_path / "in", [[{"id": "base", "text": base}, {"id": "other", "text": other}], [{"id": "edited", "text": edited}]])
    assert kept_ids(run_stage(MinHashDedup(config), inputs, tmp_path / "mh")) == ["base", "other"]
    assert kept_ids(run_stage(MinHashDedup(MinHashConfig()), inputs, tmp_path / "words")) == ["base", "edited", "other"]
