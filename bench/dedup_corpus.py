"""A benchmark corpus for near-dedup with planted duplicates at known Jaccard similarities, and its truth.

Base documents are chunks (paragraph-aligned, 60-400 words) of the real text in data/sample, minus
its planted duplicates and generated junk. A share of them get a planted variant made by random
edits (word substitutions, insertions, deletions, adjacent-sentence swaps) applied until the
variant's Jaccard similarity to its base falls to a target drawn uniformly from [0.5, 1.0]; some
variants get a variant of their own (chains), some are verbatim copies. Documents are shuffled
under opaque ids and written as JSONL shards.

The truth is every pair of documents with Jaccard >= 0.5, found by an exact all-pairs similarity
join (prefix filtering, then exact set comparison), so natural near-duplicates of the real text are
in it too. Similarity is over 5-word shingles of normalized text (NFKC, lowercase, punctuation and
symbols removed, digits as 0, Han/kana/Hangul/Thai characters as words), implemented here in plain
Python, independently of gristmill's vectorized code.

Usage: python -m bench.dedup_corpus --out /tmp/dedup_corpus [--docs 8000] [--seed 0]
"""

import argparse
import contextlib
import json
import math
import random
import unicodedata
from collections import defaultdict
from pathlib import Path

import fsspec
import regex

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"
SKIPPED_KINDS = {"exact_dup", "near_dup", "junk", "short"}
TRUTH_THRESHOLD = 0.5
NGRAM = 5
_PUNCTUATION = regex.compile(r"[\p{P}\p{S}]+")
_DIGIT = regex.compile(r"\p{Nd}")
_UNSPACED = regex.compile(r"([\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}\p{Thai}])")
_SENTENCE = regex.compile(r"(?<=[.!?])\s+")


def shingles(text: str) -> frozenset[tuple[str, ...]]:
    """The reference shingle set: word 5-grams of the normalized text (one shingle if shorter)."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = _UNSPACED.sub(r" \1 ", _DIGIT.sub("0", _PUNCTUATION.sub(" ", text)))
    words = text.split()
    if len(words) < NGRAM:
        return frozenset([tuple(words)]) if words else frozenset()
    return frozenset(tuple(words[i : i + NGRAM]) for i in range(len(words) - NGRAM + 1))


def jaccard(first: frozenset, second: frozenset) -> float:
    union = len(first | second)
    return len(first & second) / union if union else 1.0


def base_chunks(rng: random.Random) -> list[str]:
    """Paragraph-aligned chunks of 60-400 words of the sample's real, non-duplicate text."""
    chunks = []
    for path in sorted(SAMPLE.iterdir()):
        with fsspec.open(str(path), "rt", compression="infer", encoding="utf-8") as handle:
            for line in handle:
                record = json.loads(line)
                if record.get("kind") in SKIPPED_KINDS:
                    continue
                current: list[str] = []
                limit = rng.randrange(60, 400)
                for paragraph in record["text"].split("\n\n"):
                    current.append(paragraph)
                    if sum(len(p.split()) for p in current) >= limit:
                        chunks.append("\n\n".join(current))
                        current, limit = [], rng.randrange(60, 400)
                if sum(len(p.split()) for p in current) >= 60:
                    chunks.append("\n\n".join(current))
    distinct = list(dict.fromkeys(chunks))
    rng.shuffle(distinct)
    return distinct


def edit_until(rng: random.Random, text: str, target: float, vocabulary: list[str]) -> tuple[str, float]:
    """`text` edited one random operation at a time until its Jaccard to `text` is <= target."""
    original = shingles(text)
    sentences = _SENTENCE.split(text)
    similarity = 1.0
    while similarity > target:
        operation = rng.random()
        index = rng.randrange(len(sentences))
        words = sentences[index].split(" ")
        if operation < 0.15 and len(sentences) > 2:
            other = min(index + 1, len(sentences) - 1)
            sentences[index], sentences[other] = sentences[other], sentences[index]
        elif operation < 0.6:
            words[rng.randrange(len(words))] = rng.choice(vocabulary)
        elif operation < 0.8:
            words.insert(rng.randrange(len(words) + 1), rng.choice(vocabulary))
        elif len(words) > 1:
            del words[rng.randrange(len(words))]
        if operation >= 0.15:
            sentences[index] = " ".join(words)
        similarity = jaccard(original, shingles(" ".join(sentences)))
    return " ".join(sentences), similarity


def similar_pairs(sets: list[frozenset], threshold: float) -> dict[tuple[int, int], float]:
    """Every pair (i < j) with Jaccard >= threshold: prefix-filtering all-pairs join, exact verification."""
    frequency: dict[tuple, int] = defaultdict(int)
    for items in sets:
        for item in items:
            frequency[item] += 1
    index: dict[tuple, list[int]] = defaultdict(list)
    found: dict[tuple[int, int], float] = {}
    order = sorted(range(len(sets)), key=lambda i: len(sets[i]))
    for doc in order:
        items = sorted(sets[doc], key=lambda item: (frequency[item], item))
        if not items:
            continue
        prefix = len(items) - math.ceil(threshold * len(items)) + 1
        candidates = {other for item in items[:prefix] for other in index[item]}
        for other in candidates:
            if len(sets[other]) >= threshold * len(sets[doc]):
                similarity = jaccard(sets[doc], sets[other])
                if similarity >= threshold:
                    found[(min(doc, other), max(doc, other))] = similarity
        for item in items[:prefix]:
            index[item].append(doc)
    return found


def generate(out: Path, documents: int, seed: int, shards: int = 4) -> dict:
    """Writes `out/docs/part-*.jsonl`, `out/truth.jsonl` and `out/planted.jsonl`; returns a summary."""
    rng = random.Random(seed)
    chunks = base_chunks(rng)
    vocabulary = sorted({word for chunk in chunks[:500] for word in chunk.split()})
    texts: list[str] = []
    planted: list[dict] = []
    for base in chunks:
        if len(texts) >= documents:
            break
        texts.append(base)
        roll = rng.random()
        if roll < 0.05:
            texts.append(base)
            planted.append({"a": len(texts) - 2, "b": len(texts) - 1, "target": 1.0, "jaccard": 1.0})
        elif roll < 0.45:
            parent = len(texts) - 1
            for _ in range(2 if rng.random() < 0.15 else 1):
                target = rng.uniform(0.5, 1.0)
                variant, similarity = edit_until(rng, texts[parent], target, vocabulary)
                texts.append(variant)
                planted.append({"a": parent, "b": len(texts) - 1, "target": target, "jaccard": similarity})
                parent = len(texts) - 1
    texts = texts[:documents]
    if len(texts) < documents:
        print(f"the sample yields only {len(texts)} documents; using all of them")
    ids = [f"doc-{i:06d}" for i in rng.sample(range(10**6), len(texts))]
    truth = similar_pairs([shingles(text) for text in texts], TRUTH_THRESHOLD)
    (out / "docs").mkdir(parents=True, exist_ok=True)
    order = list(range(len(texts)))
    rng.shuffle(order)
    for shard in range(shards):
        with open(out / "docs" / f"part-{shard:05d}.jsonl", "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps({"id": ids[i], "text": texts[i]}) + "\n" for i in order[shard::shards])
    with open(out / "truth.jsonl", "w", encoding="utf-8") as handle:
        for (a, b), similarity in sorted(truth.items()):
            handle.write(json.dumps({"a": ids[a], "b": ids[b], "jaccard": round(similarity, 4)}) + "\n")
    with open(out / "planted.jsonl", "w", encoding="utf-8") as handle:
        for pair in planted:
            if pair["b"] < len(texts):
                handle.write(json.dumps({**pair, "a": ids[pair["a"]], "b": ids[pair["b"]]}) + "\n")
    summary = {"documents": len(texts), "planted_pairs": len(planted), "truth_pairs": len(truth), "seed": seed}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def scaled(source: Path, out: Path, documents: int, seed: int, shards: int = 8) -> None:
    """A larger corpus for timing and memory only (no truth): benchmark documents with 30% of their
    words replaced at random, so most are unique, plus a verbatim copy of every 20th one."""
    rng = random.Random(seed)
    texts = [
        json.loads(line)["text"] for path in sorted(source.glob("part-*.jsonl")) for line in path.read_text().splitlines()
    ]
    vocabulary = sorted({word for text in texts[:500] for word in text.split()})
    out.mkdir(parents=True, exist_ok=True)
    previous = ""
    with contextlib.ExitStack() as stack:
        handles = [stack.enter_context(open(out / f"part-{s:05d}.jsonl", "w", encoding="utf-8")) for s in range(shards)]
        for index in range(documents):
            if index % 20 == 19:
                text = previous
            else:
                words = rng.choice(texts).split(" ")
                for position in rng.sample(range(len(words)), len(words) * 3 // 10):
                    words[position] = rng.choice(vocabulary)
                text = previous = " ".join(words)
            handles[index % shards].write(json.dumps({"id": f"s{index:08d}", "text": text}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--docs", type=int, default=8000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(json.dumps(generate(args.out, args.docs, args.seed)))


if __name__ == "__main__":
    main()
