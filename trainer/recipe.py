"""Turns a TOML recipe, a preset name and `--set section.option=value` overrides into one checked TrainConfig.

The preset (if any) is the base, the TOML file is laid over it, then the overrides; the merged table goes
through `build_config`, so an unknown key or an ill-typed value names its field, and the datasets are
opened and checked against the model before anything touches a GPU.
"""

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

from gristmill.pipeline.config import build_config, load_toml
from gristmill.pipeline.errors import UserError
from gristmill.trainer.config import TrainConfig
from gristmill.trainer.loader import DatasetSummary, check_datasets
from gristmill.trainer.presets import TRAIN_PRESETS


def load_train_config(path: Path | None, *, preset: str | None = None, overrides: list[str] = ()) -> TrainConfig:
    table: dict[str, Any] = {}
    if preset is not None:
        if preset not in TRAIN_PRESETS:
            raise UserError(f"--preset {preset!r} is not one of {', '.join(TRAIN_PRESETS)}")
        table = dataclasses.asdict(TRAIN_PRESETS[preset]())
    if path is not None:
        table = _merge(table, load_toml(path))
    for override in overrides:
        key, value = _parse_override(override)
        table = _merge(table, _nest(key.split("."), value))
    return build_config(TrainConfig, table)


def check_run(cfg: TrainConfig) -> DatasetSummary:
    """Opens the datasets and checks them against the model (vocab, tokenizer); errors become UserErrors."""
    try:
        return check_datasets(cfg.data, cfg.model.vocab_size)
    except (ValueError, FileNotFoundError) as err:
        raise UserError(str(err)) from None


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _nest(keys: list[str], value: Any) -> dict[str, Any]:
    return {keys[0]: value} if len(keys) == 1 else {keys[0]: _nest(keys[1:], value)}


def _parse_override(override: str) -> tuple[str, Any]:
    """`a.b=VALUE`, VALUE in TOML syntax (numbers, true/false, [lists], "strings"); bare words are strings."""
    key, separator, text = override.partition("=")
    if not separator or not key.strip():
        raise UserError(f"--set {override!r}: expected section.option=value")
    try:
        value = tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        value = text
    return key.strip(), value
