"""Decoder-only language models: attention and Mamba2 blocks stacked by a layer pattern."""
