"""Recipe stage names of the pipeline package itself (dedup stages), as lazy "module:Class" strings."""

STAGES: dict[str, str] = {
    "exact_dedup": "gristmill.pipeline.dedup.exact:ExactDedup",
    "url_dedup": "gristmill.pipeline.dedup.url:UrlDedup",
    "line_dedup": "gristmill.pipeline.dedup.lines:LineDedup",
    "minhash_dedup": "gristmill.pipeline.dedup.minhash.stage:MinHashDedup",
}
