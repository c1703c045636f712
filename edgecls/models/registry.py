"""The model registry: every architecture edgecls can train, looked up by name.

A leaf: it imports nothing of edgecls but its errors. Builders register themselves with
``@register_model`` when ``edgecls.models.architectures`` is imported; ``edgecls.models.list_models``
and ``get_model_spec`` do that import. Tests walk the registry, so a new architecture is covered by
build → train step → export tests without writing new tests.
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
    # The builder scales its widths by ``alpha``; without one, an alpha other than 1 is an error
    # rather than a setting the builder would silently ignore.
    width_multiplier: bool = False
    test_only: bool = False  # for fast tests and smoke runs; not a deployment architecture
    # Called as ``data_init(model, images)`` on a freshly built model before its first training
    # step, with the training images (uint8 NHWC): weights computed from data, e.g. a whitening.
    data_init: Callable | None = None
    frozen_layers: tuple[str, ...] = ()  # layers training never updates (e.g. that whitening)
    # How the shared model checks (tests/model_checks.py) treat this model: the smallest size and
    # builder arguments (e.g. a narrow alpha) that still exercise the whole graph; whether all its
    # checks, or which of them (e.g. "qat"), are too slow for the default test run (pytest -m slow).
    test_size: int = 32
    test_kwargs: dict = dataclasses.field(default_factory=dict)
    test_slow: bool = False
    test_slow_checks: tuple[str, ...] = ()
    # The widths Keras publishes ImageNet weights for (MobileNetV3: 0.75 and 1.0, minimalistic 1.0 only);
    # ``edgecls search`` offers pretrained architectures at these widths when the weights are auto.
    pretrained_alphas: tuple[float, ...] = (1.0,)
    # In ``edgecls search``'s default space; False for models too large for an edge CPU (name them in --space).
    searched: bool = True

    def check_alpha(self, alpha: float | None) -> None:
        """One-line error when ``alpha`` asks for a width this architecture cannot scale to."""
        if alpha is None or self.width_multiplier or float(alpha) == 1.0:
            return
        scalable = ", ".join(spec.name for spec in _MODELS.values() if spec.width_multiplier)
        raise EdgeclsError(f"{self.name} has no width multiplier, so --alpha (model.alpha) must be 1, got {alpha:g}; "
                           f"architectures with one: {scalable}")


_MODELS: dict[str, ModelSpec] = {}


def register_model(name: str, **meta):
    def decorate(builder):
        _MODELS[name] = ModelSpec(name=name, builder=builder, **meta)
        return builder

    return decorate


def registered() -> list[ModelSpec]:
    """Every spec registered so far (``edgecls.models.list_models`` loads the builders first)."""
    return list(_MODELS.values())


def lookup(name: str) -> ModelSpec:
    try:
        return _MODELS[name]
    except KeyError:
        raise EdgeclsError(f"unknown architecture '{name}'; choose one of: {', '.join(_MODELS)}") from None
