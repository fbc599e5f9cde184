"""Named model sizes, from CPU-test tiny to about 1B parameters; variants edit a base preset."""

from collections.abc import Callable

from gristmill.trainer.models.config import ModelConfig, SSMConfig

GPT2_PADDED_VOCAB = 50304


def tiny_transformer() -> ModelConfig:
    """Two attention blocks, d_model 64: the CPU test model."""
    return ModelConfig(vocab_size=256, d_model=64, layer_pattern="AA", n_heads=4, n_kv_heads=2)


def tiny_hybrid() -> ModelConfig:
    """Mamba2 - attention - Mamba2 at d_model 64, small SSM chunks so CPU rows hold several."""
    cfg = tiny_transformer()
    cfg.layer_pattern = "MAM"
    cfg.ssm = SSMConfig(d_state=16, head_dim=16, chunk_size=16)
    return cfg


def transformer_125m() -> ModelConfig:
    return ModelConfig(
        vocab_size=GPT2_PADDED_VOCAB, d_model=768, layer_pattern="A" * 12, n_heads=12, n_kv_heads=4
    )


def transformer_350m() -> ModelConfig:
    return ModelConfig(
        vocab_size=GPT2_PADDED_VOCAB, d_model=1024, layer_pattern="A" * 24, n_heads=16, n_kv_heads=4
    )


def hybrid_350m() -> ModelConfig:
    """Two Mamba2 layers per attention layer, 30 layers at d_model 1024 (about 345M parameters)."""
    cfg = transformer_350m()
    cfg.layer_pattern = "MMA" * 10
    cfg.ssm = SSMConfig(d_state=128, head_dim=64, chunk_size=256)
    return cfg


def transformer_1b() -> ModelConfig:
    return ModelConfig(
        vocab_size=GPT2_PADDED_VOCAB, d_model=2048, layer_pattern="A" * 16, n_heads=32, n_kv_heads=8,
        ffn_hidden=8192, tie_embeddings=True, rope_theta=500000.0,
    )


def hybrid_1b() -> ModelConfig:
    """Two Mamba2 layers per attention layer, 24 layers at d_model 2048 (about 1B parameters)."""
    cfg = transformer_1b()
    cfg.layer_pattern = "MMA" * 8
    cfg.ssm = SSMConfig(d_state=128, head_dim=64, chunk_size=256)
    return cfg


MODEL_PRESETS: dict[str, Callable[[], ModelConfig]] = {
    fn.__name__: fn
    for fn in (
        tiny_transformer, tiny_hybrid, transformer_125m, transformer_350m, hybrid_350m, transformer_1b, hybrid_1b
    )
}
