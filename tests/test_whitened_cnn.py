"""whitened_cnn's own pieces: the patch whitening computed from data, the dirac start, and training
that sets the whitening once and never moves it.

Build → train step → int8 → QAT → ONNX → bundle are the shared model checks (tests/model_checks.py).
"""

import numpy as np
import pytest

from edgecls.models import modeling
from edgecls.models.whitened_cnn import WHITEN_EPS, WHITEN_LAYER, init_patch_whitening
from edgecls.tf import keras, tf

pytestmark = pytest.mark.usefixtures("fresh_keras_session")


def _correlated_images(count=64, size=32, seed=0):
    # A grey level per pixel shared by the three channels plus a little colour noise: strongly
    # correlated channels, so whitening has something to undo.
    rng = np.random.default_rng(seed)
    grey = rng.integers(40, 216, (count, size, size, 1))
    colour = rng.integers(-30, 31, (count, size, size, 3))
    return np.clip(grey + colour, 0, 255).astype(np.uint8)


def _whitened(model, images):
    # The whitening before its ReLU (the ReLU would hide the negative halves).
    kernel, bias = model.get_layer(WHITEN_LAYER).get_weights()
    out = (tf.nn.conv2d(images.astype("float32"), kernel, strides=1, padding="VALID") + bias).numpy()
    return out.reshape(-1, out.shape[-1])


def _check_decorrelated(outputs):
    half = outputs.shape[1] // 2
    first, negated = outputs[:, :half], outputs[:, half:]
    np.testing.assert_allclose(negated, -first, atol=1e-4)  # each filter and its negative
    covariance = np.cov(first, rowvar=False)
    off_diagonal = covariance - np.diag(np.diag(covariance))
    assert np.abs(first.mean(axis=0)).max() < 0.05
    assert np.abs(off_diagonal).max() < 0.05
    # Unit variance, less what the eigenvalue floor takes from the weakest directions.
    assert 0.8 < np.diag(covariance).min() and np.diag(covariance).max() < 1.01


def test_patch_whitening_makes_the_patches_of_the_data_uncorrelated_with_unit_variance():
    images = _correlated_images()
    model = modeling.build_model("whitened_cnn", 32, 3, alpha=0.125)
    raw = np.cov(images[:, :2, :2].reshape(len(images), -1).astype(float) / 255, rowvar=False)
    assert raw[0, 1] > 10 * WHITEN_EPS  # the raw channels are far from uncorrelated
    init_patch_whitening(model, images)
    _check_decorrelated(_whitened(model, images))


def test_the_whitening_is_followed_by_a_relu():
    model = modeling.build_model("whitened_cnn", 32, 3, alpha=0.125)
    init_patch_whitening(model, _correlated_images())
    images = _correlated_images(count=4, seed=2)
    outputs = keras.Model(model.input, model.get_layer(WHITEN_LAYER).output)(images.astype("float32")).numpy()
    np.testing.assert_allclose(outputs.reshape(-1, outputs.shape[-1]), np.maximum(_whitened(model, images), 0),
                               atol=1e-4)


def test_convolutions_after_the_whitening_start_as_the_identity():
    model = modeling.build_model("whitened_cnn", 32, 3, alpha=0.125)
    kernel = model.get_layer("group1b_conv").get_weights()[0]  # in = out channels: all identity
    channels = kernel.shape[-1]
    np.testing.assert_array_equal(kernel[1, 1], np.eye(channels))
    assert not kernel[0].any() and not kernel[2].any()
    widening = model.get_layer("group2a_conv").get_weights()[0]  # the first in-channels filters only
    in_c = widening.shape[2]
    np.testing.assert_array_equal(widening[1, 1, :, :in_c], np.eye(in_c))
    assert widening[:, :, :, in_c:].any()


def test_training_sets_the_whitening_from_the_training_images_and_never_moves_it(tmp_path, tiny_config):
    from PIL import Image

    from edgecls.models.model_files import load_keras_model
    from edgecls.training.data_prep import prepare_data
    from edgecls.training.trainer import train

    images = _correlated_images(count=36, seed=1)
    for index, image in enumerate(images):
        folder = tmp_path / "data" / f"class{index % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{index}.png")
    config = tiny_config(tmp_path / "data", epochs=2, lr=0.05, optimizer="sgd")
    config.model.arch, config.model.alpha = "whitened_cnn", 0.125
    train(config, tmp_path / "run", verbose=0)

    model = load_keras_model(tmp_path / "run" / "model.keras")
    assert not model.get_layer(WHITEN_LAYER).trainable
    expected = modeling.build_model("whitened_cnn", 32, 3, alpha=0.125)
    init_patch_whitening(expected, prepare_data(config, None, verbose=0).train.images)
    for got, want in zip(model.get_layer(WHITEN_LAYER).get_weights(), expected.get_layer(WHITEN_LAYER).get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert not np.array_equal(model.get_layer("group1a_conv").get_weights()[0],
                              expected.get_layer("group1a_conv").get_weights()[0])  # the rest did learn
