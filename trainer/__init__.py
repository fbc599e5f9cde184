"""Packing trainer: token-shard loader, document-aware packer, models, training loop, checkpoints."""
