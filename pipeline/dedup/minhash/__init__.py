"""MinHash-LSH near-duplicate removal: signatures -> band buckets -> pairs -> clusters -> filter."""
