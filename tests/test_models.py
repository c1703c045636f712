"""Model building details: MACs, freezing, Keras weight files, errors.

Build → train step → save and load in a fresh process for every registered architecture is in the
shared model checks (tests/model_checks.py, run by tests/test_model_checks.py).
"""

import numpy as np
import pytest

from edgecls.errors import EdgeclsError
from edgecls.models import get_model_spec, list_models, modeling
from edgecls.tf import keras

NUM_CLASSES = 3


pytestmark = pytest.mark.usefixtures("fresh_keras_session")


def test_macs_of_mobilenet_v3_small_match_the_paper():
    # MobileNetV3-Small is ~56 M MACs at 224 (Howard et al. 2019); without the 1x1 top conv, a bit less.
    model = modeling.build_model("mobilenet_v3_small", 224, 1000)
    assert 50e6 < modeling.count_macs(model) < 62e6


def test_two_phase_freezing_keeps_batchnorm_frozen():
    model = modeling.build_model("mobilenet_v3_small", 32, NUM_CLASSES, alpha=0.35)
    modeling.freeze_base(model)
    trainable = [layer.name for layer in model.layers if layer.trainable and layer.weights]
    assert trainable == ["head_logits"]
    unfrozen = modeling.unfreeze_top(model, 10)
    assert 0 < unfrozen <= 10
    assert not any(layer.trainable for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization))


@pytest.mark.parametrize("arch, app, minimalistic", [
    ("mobilenet_v3_small", "MobileNetV3Small", False),
    ("mobilenet_v3_large", "MobileNetV3Large", False),
    ("mobilenet_v3_small_minimalistic", "MobileNetV3Small", True),
])
def test_keras_weight_files_load_and_give_keras_outputs(arch, app, minimalistic, tmp_path):
    """Our quantization-friendly MobileNetV3 computes exactly what Keras' does with the same file."""
    donor = getattr(keras.applications, app)(input_shape=(64, 64, 3), include_top=False, weights=None,
                                             alpha=0.75, minimalistic=minimalistic)
    rng = np.random.default_rng(0)
    for layer in donor.layers:  # non-trivial weights and BatchNorm statistics
        layer.set_weights([rng.normal(0, 0.2, w.shape).astype("float32") + (1.0 if "variance" in w.name else 0.0)
                           for w in layer.weights])
    weights_file = tmp_path / "no_top.h5"  # the layout of Keras' downloadable "no_top" ImageNet files
    donor.save_weights(weights_file)
    model = modeling.build_model(arch, 64, 3, weights=str(weights_file), alpha=0.75)
    # Compared after global pooling: our blocks carry hard-swish six times larger and rescale there.
    names = [layer.name for layer in model.layers]
    features = keras.Model(model.input, model.get_layer("head_rescale" if "head_rescale" in names else "head_pool").output)
    x = rng.integers(0, 256, (2, 64, 64, 3)).astype("float32")
    expected = keras.layers.GlobalAveragePooling2D()(donor(x, training=False)).numpy()
    np.testing.assert_allclose(features(x, training=False).numpy(), expected, atol=1e-4 * np.abs(expected).max())


def test_local_weights_file_from_a_run_of_the_same_architecture(tmp_path):
    model = modeling.build_model("simple_cnn", 32, 3, weights="none")
    weights_file = tmp_path / "simple.weights.h5"
    model.save_weights(weights_file)
    loaded = modeling.build_model("simple_cnn", 32, 7, weights=str(weights_file))  # other head: skipped
    np.testing.assert_array_equal(loaded.get_layer("block1a_conv").get_weights()[0],
                                  model.get_layer("block1a_conv").get_weights()[0])


def test_user_errors_are_edgecls_errors(tmp_path):
    with pytest.raises(EdgeclsError, match="unknown architecture 'nope'"):
        modeling.build_model("nope", 32, 3)
    with pytest.raises(EdgeclsError, match="at least 32"):
        modeling.build_model("tiny_cnn", 16, 3)
    with pytest.raises(EdgeclsError, match="weights file not found"):
        modeling.build_model("tiny_cnn", 32, 3, weights=str(tmp_path / "missing.h5"))
    with pytest.raises(EdgeclsError, match="no ImageNet weights"):
        modeling.build_model("tiny_cnn", 32, 3, weights="imagenet")


WIDTH_SCALED = [name for name in list_models() if get_model_spec(name).width_multiplier]


@pytest.mark.parametrize("arch", WIDTH_SCALED)
def test_an_architecture_with_a_width_multiplier_scales_its_widths(arch):
    # The registry's word is checked: alpha must change the model, not be accepted and ignored.
    size = get_model_spec(arch).test_size
    narrow = modeling.build_model(arch, size, NUM_CLASSES, alpha=0.5).count_params()
    full = modeling.build_model(arch, size, NUM_CLASSES, alpha=1.0).count_params()
    assert narrow < 0.6 * full, (arch, narrow, full)


@pytest.mark.parametrize("arch", sorted(set(list_models()) - set(WIDTH_SCALED)))
def test_alpha_on_an_architecture_without_a_width_multiplier_is_a_one_line_error(arch):
    assert {"efficientnet_b0", "resnet50", "tiny_cnn"} <= set(list_models()) - set(WIDTH_SCALED)
    with pytest.raises(EdgeclsError, match=f"{arch} has no width multiplier.*got 0.5; architectures with one: "
                                           "mobilenet_v3_small, ") as raised:
        modeling.build_model(arch, 32, NUM_CLASSES, alpha=0.5)
    assert "\n" not in str(raised.value)
    modeling.build_model("tiny_cnn", 32, NUM_CLASSES, alpha=1.0)  # alpha 1 (the default) is what the widths are


def test_the_api_refuses_alpha_before_touching_the_run_folder(tmp_path, make_images):
    import edgecls

    make_images(tmp_path / "data", per_class=2)
    run = tmp_path / "run"
    run.mkdir()
    (run / "keep.txt").write_text("an earlier run")
    with pytest.raises(EdgeclsError, match="efficientnet_b3 has no width multiplier"):
        edgecls.train(tmp_path / "data", run, arch="efficientnet_b3", alpha=0.35, force=True)
    with pytest.raises(EdgeclsError, match="tiny_cnn has no width multiplier"):
        edgecls.train(tmp_path / "data", run, config={"model": {"arch": "tiny_cnn", "alpha": 2.0}}, force=True)
    assert [p.name for p in run.iterdir()] == ["keep.txt"]  # --force did not empty it


def test_imagenet_download_failure_is_one_clear_error(monkeypatch):
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- [Errno -3]")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    import tf_keras.src.applications.mobilenet_v3 as mobilenet_v3_module

    monkeypatch.setattr(mobilenet_v3_module.data_utils, "get_file", offline)
    with pytest.raises(EdgeclsError, match="cannot download the ImageNet weights"):
        modeling.build_model("mobilenet_v3_small", 32, 3, weights="imagenet")


def test_from_scratch_batchnorm_statistics_can_settle_in_a_short_run():
    # With Keras' ImageNet momentum (0.999) a short run from scratch evaluates at chance.
    model = modeling.build_model("mobilenet_v3_small", 32, NUM_CLASSES, weights="none", alpha=0.35)
    momenta = {layer.momentum for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)}
    assert momenta == {0.9}
