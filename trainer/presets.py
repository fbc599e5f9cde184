"""Named training runs as Python functions returning a complete TrainConfig; variants edit a base run.

Presets leave data.manifests empty: the TOML recipe (or --set data.manifests=[...]) names the data.
"""

from collections.abc import Callable

from gristmill.trainer.config import (
    CheckpointConfig,
    DataConfig,
    MetricsConfig,
    OptimizerConfig,
    ScheduleConfig,
    TrainConfig,
)
from gristmill.trainer.models.presets import hybrid_1b, tiny_hybrid, transformer_125m, transformer_350m


def tiny_debug() -> TrainConfig:
    """A tiny hybrid (Mamba2 + attention) that trains on CPU in seconds: for tests and smoke runs."""
    return TrainConfig(
        model=tiny_hybrid(),
        data=DataConfig(seq_len=64, packing="best_fit", best_fit_buffer=64),
        optimizer=OptimizerConfig(lr=3e-3, weight_decay=0.0),
        schedule=ScheduleConfig(warmup_steps=10),
        checkpoint=CheckpointConfig(every_steps=50, keep_last=2),
        metrics=MetricsConfig(log_every=10, tensorboard=False),
        steps=100,
        micro_batch_rows=4,
        eval_every=50,
        eval_batches=4,
    )


def transformer_125m_2k() -> TrainConfig:
    """~125M transformer at seq_len 2048, best-fit packing, 8 rows x 2048 tokens per micro-batch per GPU."""
    return TrainConfig(
        model=transformer_125m(),
        data=DataConfig(seq_len=2048, packing="best_fit", num_workers=2),
        optimizer=OptimizerConfig(lr=6e-4),
        schedule=ScheduleConfig(warmup_steps=700),
        checkpoint=CheckpointConfig(every_steps=1000),
        steps=20000,
        micro_batch_rows=8,
        eval_every=1000,
    )


def transformer_350m_2k() -> TrainConfig:
    cfg = transformer_125m_2k()
    cfg.model = transformer_350m()
    cfg.optimizer.lr = 3e-4
    return cfg


def hybrid_1b_4k() -> TrainConfig:
    """~1B Mamba2/attention hybrid at seq_len 4096 with a warmup-stable-decay schedule."""
    cfg = transformer_125m_2k()
    cfg.model = hybrid_1b()
    cfg.data.seq_len = 4096
    cfg.micro_batch_rows = 4
    cfg.optimizer.lr = 3e-4
    cfg.schedule = ScheduleConfig(kind="wsd", warmup_steps=2000, decay_fraction=0.2)
    return cfg


TRAIN_PRESETS: dict[str, Callable[[], TrainConfig]] = {
    fn.__name__: fn for fn in (tiny_debug, transformer_125m_2k, transformer_350m_2k, hybrid_1b_4k)
}
