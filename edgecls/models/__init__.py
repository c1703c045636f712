"""Models: the registry (a leaf), the architectures that register in it, custom layers, model files.

This package sits at the bottom of edgecls: it imports nothing above ``edgecls.errors`` and
``edgecls.tf``. Importing it is cheap; TensorFlow loads with the first architecture built.
"""

from __future__ import annotations


def _load_architectures() -> None:
    import edgecls.models.architectures  # noqa: F401  (registers every builder on import)


def list_models(*, include_test_only: bool = True) -> list[str]:
    """Names of every registered architecture, in registration order."""
    from edgecls.models.registry import registered

    _load_architectures()
    return [spec.name for spec in registered() if include_test_only or not spec.test_only]


def get_model_spec(name: str):
    """The :class:`~edgecls.models.registry.ModelSpec` registered as ``name`` (one-line error if unknown)."""
    from edgecls.models.registry import lookup

    _load_architectures()
    return lookup(name)
