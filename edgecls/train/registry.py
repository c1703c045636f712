"""The model registry: every architecture edgecls can train, looked up by name.

Builders register themselves with ``@register_model``; tests walk the registry, so a new
architecture is covered by build → train step → export tests without writing new tests.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from edgecls.errors import EdgeclsError


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable
    description: str
    pretrained: bool  # ImageNet weights exist, so --weights imagenet and two-phase training apply
    min_size: int = 32
    default_size: int = 224
    fine_tune_layers: int = 0  # base layers unfrozen in phase 2 (0 = phase 2 fine-tunes all)
    test_size: int = 32  # smallest size that still exercises the whole graph in fast tests
    test_only: bool = False  # for fast tests and smoke runs; not a deployment architecture


_MODELS: dict[str, ModelSpec] = {}


def register_model(name: str, **meta):
    def decorate(builder):
        _MODELS[name] = ModelSpec(name=name, builder=builder, **meta)
        return builder

    return decorate


def _ensure_builders_loaded() -> None:
    import edgecls.train.architectures  # noqa: F401  (registers on import)


def model_names() -> list[str]:
    _ensure_builders_loaded()
    return list(_MODELS)


def get_model_spec(name: str) -> ModelSpec:
    _ensure_builders_loaded()
    try:
        return _MODELS[name]
    except KeyError:
        raise EdgeclsError(f"unknown architecture '{name}'; choose one of: {', '.join(_MODELS)}") from None
