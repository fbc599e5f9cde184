"""Deduplication stages: exact (normalized text), URL, line-level and MinHash-LSH near-duplicates.

Each is a `GlobalStage` made of map phases run through the executor, with shuffles between them as
partitioned Arrow files (see `shuffle.py`), so the same code runs locally and on Ray.
"""
