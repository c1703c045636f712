"""Grad-CAM: the heatmap points at the evidence, for every model kind.

That every registered architecture has a target layer and explains finitely is in the shared
model checks (tests/model_checks.py).
"""

import numpy as np
import pytest

from edgecls.errors import EdgeclsError
from edgecls.insight.grad_cam import GradCam, float32_twin, png_names
from edgecls.insight.overlay import blend, upsample
from edgecls.tf import keras

SIZE = 32
SQUARE = (slice(4, 12), slice(20, 28))  # rows, columns: top right, so a transposed map fails


def planted_image():
    image = np.full((SIZE, SIZE, 3), 100, np.uint8)
    image[SQUARE] = (255, 0, 0)
    return image


def red_detector_layers(x):
    """2×2 stride-2 convolution: channel 0 fires on red (R − G − B), channel 1 on grey (G + B − R)."""
    x = keras.layers.Rescaling(1.0 / 255.0, name="normalize")(x)
    conv = keras.layers.Conv2D(2, 2, strides=2, name="detect")
    x = keras.layers.ReLU(name="detect_relu")(conv(x))
    kernel = np.zeros((2, 2, 3, 2), np.float32)
    kernel[:, :, :, 0] = np.array([1.0, -1.0, -1.0]) / 4
    kernel[:, :, :, 1] = np.array([-1.0, 1.0, 1.0]) / 4
    conv.set_weights([kernel, np.zeros(2, np.float32)])
    return x


def head(features):
    x = keras.layers.GlobalAveragePooling2D(name="head_pool")(features)
    dense = keras.layers.Dense(2, name="head_logits")
    probs = keras.layers.Activation("softmax", dtype="float32", name="head_probs")(dense(x))
    # Red covers 1/16 of the image, so its evidence is weighted up to win: logits ≈ (2.1, 1.2).
    dense.set_weights([np.array([[40.0, -4.0], [-1.0, 4.0]], np.float32), np.zeros(2, np.float32)])
    return probs


def planted_model():
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    return keras.Model(inputs, head(red_detector_layers(inputs)), name="planted")


def assert_points_at_square(heatmap, inside=True):
    # On the 16×16 map the square is cells 2–5 × 10–13: exactly 1 there and 0 elsewhere (or the reverse).
    cells = np.zeros((16, 16), bool)
    cells[2:6, 10:14] = True
    expected = cells if inside else ~cells
    np.testing.assert_allclose(heatmap, expected.astype(np.float32), atol=1e-5)
    big = upsample(heatmap, SIZE, SIZE)
    row, col = np.unravel_index(np.argmax(big), big.shape)
    mask = np.zeros((SIZE, SIZE), bool)
    mask[SQUARE] = True
    assert mask[row, col] == inside, (row, col)


def test_heatmap_is_highest_on_the_planted_pattern():
    explainer = GradCam(planted_model())
    assert explainer.layer == "detect_relu"
    result = explainer(planted_image()[None])
    assert result.classes.tolist() == [0], "the red square wins"
    assert result.heatmaps.shape == (1, 16, 16)
    assert_points_at_square(result.heatmaps[0])
    # Explaining the other class moves the heat to the grey background.
    grey = explainer(planted_image()[None], classes=[1])
    assert_points_at_square(grey.heatmaps[0], inside=False)


def test_mixed_precision_model_is_explained_in_float32():
    reference = planted_model()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        mixed = planted_model()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert mixed.get_layer("detect").compute_dtype == "float16"
    twin = float32_twin(mixed)
    assert twin is not mixed and {layer.compute_dtype for layer in twin.layers} == {"float32"}
    assert float32_twin(reference) is reference
    images = np.stack([planted_image(), planted_image()[:, ::-1]])
    np.testing.assert_allclose(GradCam(mixed)(images).heatmaps, GradCam(reference)(images).heatmaps, atol=1e-5)


def test_nested_model_is_explained_through_its_output():
    inner_input = keras.Input((SIZE, SIZE, 3))
    backbone = keras.Model(inner_input, red_detector_layers(inner_input), name="backbone")
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    nested = keras.Model(inputs, head(backbone(inputs)), name="nested")
    explainer = GradCam(nested)
    assert explainer.layer == "backbone"
    assert_points_at_square(explainer(planted_image()[None]).heatmaps[0])
    with pytest.raises(EdgeclsError, match="inside the nested model 'backbone'"):
        GradCam(nested, "detect_relu")


@pytest.mark.parametrize("name, fragment", [("nope", "no layer 'nope' in planted; feature-map layers nearest the "
                                                      "head: detect_relu, detect, normalize"),
                                            ("head_logits", "not a height × width × channels feature map")])
def test_layer_mistakes_name_the_candidates(name, fragment):
    with pytest.raises(EdgeclsError) as info:
        GradCam(planted_model(), name)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_an_explicit_layer_is_used():
    assert GradCam(planted_model(), "detect").layer == "detect"


def test_overlay_and_png_names():
    image = np.zeros((4, 4, 3), np.uint8)
    heat = np.zeros((4, 4), np.float32)
    heat[0, 0] = 1.0
    blended = blend(image, heat, alpha=0.5)
    assert blended[0, 0, 0] > 50 and blended[0, 0, 2] < 10, "hot is red in jet"
    assert blended[3, 3, 2] > 50 and blended[3, 3, 0] < 10, "cold is blue"
    assert png_names(["a/x.jpg", "b/x.png", "c/y.jpg"]) == ["x_gradcam_1.png", "x_gradcam_2.png", "y_gradcam.png"]
