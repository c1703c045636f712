"""The graph converted to TFLite computes what the trained model computes, with the faster shapes."""

import numpy as np
from deploy_helpers import tflite_outputs

from edgecls.converters import tflite_convert
from edgecls.converters.speed_rewrites import faster_equivalent
from edgecls.converters.tflite_inspect import inspect_tflite
from edgecls.models import get_model_spec
from edgecls.models.modeling import build_model
from edgecls.tf import keras, tf

SIZE = 32


def _images(count, size=SIZE, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (count, size, size, 3)).astype(np.uint8)


def _smooth_images(count, seed=0):
    """Images with the local correlation of photos: a random network's int8 error on them is small
    enough to compare (on pixel noise it is as large as the logits themselves)."""
    small = np.random.default_rng(seed).integers(0, 256, (count, 4, 4, 3)).astype(np.float32)
    return tf.image.resize(small, (SIZE, SIZE), "bilinear").numpy().clip(0, 255).astype(np.uint8)


def _with_batchnorm_statistics(model, images):
    """Non-trivial BatchNorm statistics, so a fused kernel that ignores them would be caught."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0
    model(images.astype(np.float32), training=True)
    return model


def test_mobilenet_v3_small_gets_both_rewrites_and_computes_the_same():
    model = build_model("mobilenet_v3_small", SIZE, 3)  # at alpha 1, where the first block fuses
    images = _images(8)
    _with_batchnorm_statistics(model, images)
    weights_before = [w.copy() for w in model.get_weights()]
    fast, rewrites = faster_equivalent(model)
    assert rewrites == ["paired stem: Conv", "fused pointwise pair: expanded_conv/project + "
                        "expanded_conv/project/BatchNorm + expanded_conv_1/expand",
                        "tiled gate: expanded_conv/squeeze_excite/Mul"]
    assert fast.get_layer("expanded_conv/squeeze_excite/Conv_1").kernel.shape[-1] == 16 * SIZE // 4
    assert fast.get_layer("Conv").kernel.shape == (3, 2, 6, 16)
    assert fast.get_layer("Conv").input_shape == (None, SIZE, SIZE // 2, 6)
    assert "expanded_conv/project" not in [layer.name for layer in fast.layers]
    expected = model(images.astype(np.float32), training=False).numpy()
    np.testing.assert_allclose(fast(images.astype(np.float32), training=False).numpy(), expected, atol=1e-5)
    # The trained model is left as it was
    for before, after in zip(weights_before, model.get_weights()):
        np.testing.assert_array_equal(before, after)
    assert model.get_layer("Conv").kernel.shape == (3, 3, 3, 16)
    int8 = inspect_tflite(tflite_convert.convert(model, "int8", calibration=images))
    built = inspect_tflite(tflite_convert.convert(model, "int8", calibration=images, speed_rewrites=False))
    assert int8["xnnpack_partitions"] == 1 and int8["ops"]["CONV_2D"] == built["ops"]["CONV_2D"] - 1
    assert int8["ops"]["RESHAPE"] == built["ops"].get("RESHAPE", 0) + 2  # the pixel pairs and the tiled gate


def test_int8_with_the_paired_stem_and_tiled_gate_gives_the_same_outputs_in_one_partition():
    # At alpha 0.35 the first block's fusion would cost more multiply-adds: it is left out
    model = build_model("mobilenet_v3_small", SIZE, 3, **get_model_spec("mobilenet_v3_small").test_kwargs)
    images = _smooth_images(32)
    _with_batchnorm_statistics(model, images[:16])
    assert faster_equivalent(tflite_convert.logits_model(model))[1] == [
        "paired stem: Conv", "tiled gate: expanded_conv/squeeze_excite/Mul", "tiled gate: expanded_conv_3/squeeze_excite/Mul"]
    fast = tflite_convert.convert(model, "int8", calibration=images[16:])
    plain = tflite_convert.convert(model, "int8", calibration=images[16:], speed_rewrites=False)
    info, before = inspect_tflite(fast), inspect_tflite(plain)
    assert info["xnnpack_partitions"] == 1 and info["float_ops"] == []
    assert info["ops"]["RESHAPE"] == before["ops"].get("RESHAPE", 0) + 3
    assert {k: v for k, v in info["ops"].items() if k != "RESHAPE"} == \
        {k: v for k, v in before["ops"].items() if k != "RESHAPE"}
    # The same integer products summed in another order and the same gate values repeated: the
    # same outputs, up to a calibration range that differs in its last float bit
    probe = np.concatenate([_smooth_images(16, seed=1), _images(16, seed=1)])
    outputs = tflite_outputs(plain, probe).astype(int)
    difference = np.abs(tflite_outputs(fast, probe).astype(int) - outputs)
    assert difference.max() <= 1 and difference.mean() < 0.05 and np.ptp(outputs) > 20  # bit-equal here


def _functional(width=SIZE, second_reader=False, narrow_middle=False):
    inputs = keras.Input((SIZE, width, 3))
    x = keras.layers.Conv2D(64 if narrow_middle else 8, 3, strides=2, padding="same", name="stem")(inputs)
    a = keras.layers.Conv2D(8, 1, use_bias=False, name="a")(x)
    a = keras.layers.BatchNormalization(name="bn")(a)
    b = keras.layers.Conv2D(64 if narrow_middle else 16, 1, name="b")(a)
    if second_reader:
        b = keras.layers.Concatenate()([b, a])
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(b))


def test_rewrites_apply_only_where_they_are_exact_and_no_slower():
    assert faster_equivalent(_functional())[1] == ["paired stem: stem", "fused pointwise pair: a + bn + b"]
    # An odd width cannot be paired; a tensor read twice cannot be skipped; a narrow middle is cheaper as it is
    assert faster_equivalent(_functional(width=SIZE - 1))[1] == ["fused pointwise pair: a + bn + b"]
    assert faster_equivalent(_functional(second_reader=True))[1] == ["paired stem: stem"]
    assert faster_equivalent(_functional(narrow_middle=True))[1] == ["paired stem: stem"]
    for model in (_functional(), _functional(width=SIZE - 1), _functional(second_reader=True)):
        _with_batchnorm_statistics(model, _images(4, seed=2)[:, :, :model.input_shape[2]])
        probe = _images(4, seed=3)[:, :, :model.input_shape[2]].astype(np.float32)
        np.testing.assert_allclose(faster_equivalent(model)[0](probe).numpy(), model(probe).numpy(), rtol=1e-4,
                                   atol=1e-4)


def test_a_subclassed_model_is_converted_as_it_is():
    class Tiny(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = keras.layers.Conv2D(4, 3, strides=2, padding="same")

        def call(self, x):
            return self.conv(x)

    model = Tiny()
    model(np.zeros((1, SIZE, SIZE, 3), np.float32))
    assert faster_equivalent(model) == (model, [])
