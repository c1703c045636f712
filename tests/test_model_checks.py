"""Every registered architecture through the shared model checks (tests/model_checks.py).

Per-model settings (test size, builder arguments, slow) live in the model's registry entry, so a
new ``@register_model`` is tested here without a new test. Models marked ``test_slow`` run with
``pytest -m slow``; the fast ones share one fresh process for the load-from-disk check.
"""

from __future__ import annotations

import pytest
from model_checks import check_build, check_model, check_save, check_train_step, load_in_fresh_process

from edgecls.models import get_model_spec, list_models
from edgecls.tf import keras

FAST = [name for name in list_models() if not get_model_spec(name).test_slow]


def _param(name):
    return pytest.param(name, marks=pytest.mark.slow) if get_model_spec(name).test_slow else name


@pytest.fixture(scope="module")
def saved_fast_models():
    """name -> Built of the fast models checked so far in this module, waiting for the fresh-process load."""
    return {}


@pytest.mark.parametrize("name", [_param(name) for name in list_models()])
def test_model_passes_every_check(name, tmp_path_factory, saved_fast_models):
    folder = tmp_path_factory.mktemp(name)
    try:
        check_model(name, folder, load_later=None if get_model_spec(name).test_slow else saved_fast_models)
    finally:
        keras.backend.clear_session()


def test_fast_models_load_in_a_fresh_process(tmp_path_factory, saved_fast_models):
    # Models whose check did not run in this session (deselected, or failed early) are saved here.
    for name in FAST:
        if name not in saved_fast_models:
            built = check_build(name)
            check_train_step(built)
            check_save(built, tmp_path_factory.mktemp(name))
            saved_fast_models[name] = built
    load_in_fresh_process([saved_fast_models[name] for name in FAST])


def test_every_model_has_test_settings_its_builder_takes():
    for name in list_models():
        spec = get_model_spec(name)
        assert spec.test_size >= spec.min_size, name
        assert set(spec.test_kwargs) <= {"alpha", "dropout"}, (name, spec.test_kwargs)
    assert "tiny_cnn" in FAST, "the tiny test model must stay in the default run"
