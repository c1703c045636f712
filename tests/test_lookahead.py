"""The speed recipes' optimizer pieces: lookahead weight averaging and faster-stepping biases."""

import numpy as np
import pytest

from edgecls.tf import keras
from edgecls.training.lookahead import Lookahead
from edgecls.training.schedules import make_optimizer

pytestmark = pytest.mark.usefixtures("fresh_keras_session")


def _dense_model(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4,))
    x = keras.layers.Dense(3, name="dense")(inputs)
    x = keras.layers.BatchNormalization(name="bn", scale=False)(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="out")(x))


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(16, 4)).astype("float32"), rng.normal(size=(16, 2)).astype("float32")


def _one_step(optimizer, callbacks=()):
    model = _dense_model()
    before = [w.numpy().copy() for w in model.weights]
    model.compile(optimizer=optimizer, loss="mse")
    x, y = _data()
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False, callbacks=list(callbacks))
    return model, before, [w.numpy() for w in model.weights]


def _step(before, after, model, name):
    index = [w.name for w in model.weights].index(name)
    return after[index] - before[index]


def test_bias_lr_scale_multiplies_the_first_step_of_batchnorm_offsets_only():
    plain_model, plain_before, plain_after = _one_step(make_optimizer("sgd", 0.1, 0.0))
    model, before, after = _one_step(make_optimizer("sgd", 0.1, 0.0, bias_lr_scale=8.0))
    np.testing.assert_allclose(_step(before, after, model, "bn/beta:0"),
                               8 * _step(plain_before, plain_after, plain_model, "bn/beta:0"), rtol=1e-4, atol=1e-7)
    for name in ("dense/kernel:0", "dense/bias:0", "out/kernel:0", "out/bias:0"):
        np.testing.assert_allclose(_step(before, after, model, name),
                                   _step(plain_before, plain_after, plain_model, name), rtol=1e-5, atol=1e-8)


def test_a_model_compiled_with_scaled_biases_saves_and_resumes(tmp_path):
    from edgecls.models.model_files import load_keras_model

    model, _, _ = _one_step(make_optimizer("sgd", 0.1, 1e-3, bias_lr_scale=64.0))
    model.save(tmp_path / "m.keras")
    loaded = load_keras_model(tmp_path / "m.keras", compile=True)
    assert type(loaded.optimizer).__name__ == "BiasScaledSGD" and loaded.optimizer.bias_lr_scale == 64.0
    assert int(loaded.optimizer.iterations.numpy()) == 1


def test_bad_lookahead_and_bias_settings_are_clear_errors_before_any_data_work(tmp_path, tiny_config):
    from edgecls.errors import EdgeclsError
    from edgecls.training.trainer import plan_phases

    with pytest.raises(EdgeclsError, match="sgd"):
        make_optimizer("adamw", 0.1, 0.0, bias_lr_scale=2.0)
    for overrides, message in (({"lookahead_every": -1}, "lookahead_every"),
                               ({"bias_lr_scale": 0.0, "optimizer": "sgd"}, "positive"),
                               ({"bias_lr_scale": 4.0, "optimizer": "adamw"}, "sgd"),
                               ({"momentum": 1.0, "optimizer": "sgd"}, "momentum"),
                               ({"momentum": 0.85, "optimizer": "adamw"}, "sgd")):
        with pytest.raises(EdgeclsError, match=message):
            plan_phases(tiny_config(tmp_path / "absent", **overrides), pretrained=False)


def test_sgd_momentum_comes_from_the_recipe():
    assert float(make_optimizer("sgd", 0.1, 0.0, momentum=0.85).momentum) == pytest.approx(0.85)
    assert float(make_optimizer("sgd", 0.1, 0.0, bias_lr_scale=64.0, momentum=0.8).momentum) == pytest.approx(0.8)


def test_lookahead_moves_the_weights_part_of_the_way_back_to_the_slow_copy():
    _, before, trained = _one_step(keras.optimizers.SGD(0.1))
    # One step, at the end of its ramp: weights = start + (1 - decay) * (trained - start).
    model, _, after = _one_step(keras.optimizers.SGD(0.1), [Lookahead(every=1, total_steps=1, step_decay=0.75)])
    floating = [i for i, w in enumerate(model.weights) if w.dtype.is_floating]
    assert floating
    for i in floating:
        np.testing.assert_allclose(after[i], before[i] + 0.25 * (trained[i] - before[i]), rtol=1e-5, atol=1e-6)
    assert any(not np.allclose(after[i], trained[i]) for i in floating)


def test_lookahead_does_nothing_at_the_start_of_its_ramp():
    _, _, trained = _one_step(keras.optimizers.SGD(0.1))
    _, _, after = _one_step(keras.optimizers.SGD(0.1), [Lookahead(every=1, total_steps=10**6)])
    for got, want in zip(after, trained):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_a_run_with_lookahead_and_scaled_biases_trains_to_the_end(tmp_path, make_images, tiny_config):
    from edgecls.training.run_state import RunState
    from edgecls.training.trainer import train

    data = make_images(tmp_path / "data", classes=("a", "b"), per_class=12)
    config = tiny_config(data, epochs=2, optimizer="sgd", lr=0.05, lookahead_every=2, bias_lr_scale=4.0)
    train(config, tmp_path / "run", verbose=0)
    state = RunState.load(tmp_path / "run")
    assert state.finished and state.epoch == 2
