"""Every registered architecture through the shared model checks (tests/model_checks.py).

Per-model settings live in the model's registry entry (``test_size``, ``test_kwargs``, and
``test_slow`` / ``test_slow_checks`` for what runs only with ``pytest -m slow``), so a new
``@register_model`` is tested here without a new test. The fast models share one fresh process
for the load-from-disk check.
"""

from __future__ import annotations

import pytest
from model_checks import CHECKS, check_build, check_model, check_save, check_train_step, load_in_fresh_process

from edgecls.models import get_model_spec, list_models
from edgecls.tf import keras

FAST = [name for name in list_models() if not get_model_spec(name).test_slow]


def _params():
    for name in list_models():
        spec = get_model_spec(name)
        if spec.test_slow:
            yield pytest.param(name, CHECKS, marks=pytest.mark.slow, id=name)
            continue
        yield pytest.param(name, tuple(c for c in CHECKS if c not in spec.test_slow_checks), id=name)
        if spec.test_slow_checks:
            slow = tuple(c for c in CHECKS if c in spec.test_slow_checks or c == "sidecar")
            yield pytest.param(name, slow, marks=pytest.mark.slow, id=f"{name}-slow-checks")


@pytest.fixture(scope="module")
def saved_fast_models():
    """name -> Built (without its model) of the fast models saved so far, for the one fresh-process load."""
    return {}


@pytest.mark.parametrize("name, checks", _params())
def test_model_passes_its_checks(name, checks, tmp_path_factory, saved_fast_models):
    folder = tmp_path_factory.mktemp(name)
    try:
        check_model(name, folder, checks=checks, load_later=saved_fast_models if name in FAST else None)
    finally:
        keras.backend.clear_session()


def test_fast_models_load_in_one_fresh_process(tmp_path_factory, saved_fast_models):
    # Models whose checks did not run in this session (deselected, or failed early) are saved here.
    for name in FAST:
        if name not in saved_fast_models:
            built = check_build(name)
            check_train_step(built)
            check_save(built, tmp_path_factory.mktemp(name))
            saved_fast_models[name] = built
            keras.backend.clear_session()
    load_in_fresh_process([saved_fast_models[name] for name in FAST])


def test_registry_test_settings_are_usable():
    for name in list_models():
        spec = get_model_spec(name)
        assert spec.test_size >= spec.min_size, name
        assert set(spec.test_kwargs) <= {"alpha", "dropout"}, (name, spec.test_kwargs)
        assert "alpha" not in spec.test_kwargs or spec.width_multiplier, f"{name}: alpha without a width multiplier"
        assert set(spec.test_slow_checks) <= set(CHECKS), (name, spec.test_slow_checks)
    assert "tiny_cnn" in FAST and "mobilenet_v3_small" in FAST, "the test model and the default model stay in the default run"


def test_a_format_in_the_table_without_model_checks_fails_them(monkeypatch):
    import fake_format
    from model_checks import format_checks

    fake_format.install(monkeypatch)
    with pytest.raises(AssertionError, match=r"\['fake'\].*no FORMAT_CHECKS entry"):
        format_checks()
