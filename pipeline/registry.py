"""Resolves a recipe's stage `type` to its class: a catalog name or a `module:Class` path.

Each package lists its stages in `<package>/catalog.py` as strings, so naming a stage imports only
that stage's module (no fastText or torch import to run a dedup recipe).
"""

import importlib

from gristmill.pipeline.errors import UserError

CATALOG_MODULES = (
    "gristmill.pipeline.catalog",
    "gristmill.filters.catalog",
    "gristmill.tokenizer.catalog",
)


def known_stages() -> dict[str, str]:
    stages: dict[str, str] = {}
    for module_name in CATALOG_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name != module_name:
                raise
            continue
        stages.update(module.STAGES)
    return stages


def resolve_stage(type_name: str) -> type:
    """The stage class for `type_name`; an unknown name is a UserError listing the known ones."""
    target = type_name if ":" in type_name else known_stages().get(type_name)
    if target is None:
        raise UserError(f"unknown stage {type_name!r} (known: {', '.join(sorted(known_stages())) or 'none'})")
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise UserError(f"stage {type_name!r}: cannot import {module_name} ({err})") from None
    try:
        return getattr(module, class_name)
    except AttributeError:
        raise UserError(f"stage {type_name!r}: {module_name} has no {class_name}") from None
