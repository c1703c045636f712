"""ONNX int8, the embedded sidecar, custom layers and one-line errors.

Float export with Keras parity for every registered architecture is in the shared model checks
(tests/model_checks.py).

Models are 32x32 with 3 classes; tiny_cnn is trained for a moment on colour-coded classes so its
predictions are confident enough to judge int8 agreement.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgecls.converters import onnx_export
from edgecls.errors import EdgeclsError
from edgecls.models import get_model_spec
from edgecls.models.modeling import build_model
from edgecls.tf import keras, tf

SIZE = 32
NUM_CLASSES = 3


def colour_images(n: int, seed: int):
    """Images whose dominant channel is the class: easy to learn, so predictions get confident."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, NUM_CLASSES, n)
    images = rng.integers(0, 90, (n, SIZE, SIZE, 3))
    for i, label in enumerate(labels):
        images[i, ..., label] += rng.integers(100, 166)
    return np.clip(images, 0, 255).astype(np.uint8), labels


def random_images(n: int, seed: int = 0):
    return np.random.default_rng(seed).integers(0, 256, (n, SIZE, SIZE, 3)).astype(np.uint8)


def session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def onnx_export_of(tmp_path_factory):
    """arch -> (keras model, float ONNX path); each model is built and exported once per module."""
    folder = tmp_path_factory.mktemp("onnx")
    cache = {}

    def get(arch):
        if arch not in cache:
            keras.utils.set_random_seed(0)
            model = build_model(arch, SIZE, NUM_CLASSES, weights="none", **get_model_spec(arch).test_kwargs)
            if arch == "tiny_cnn":
                images, labels = colour_images(96, seed=1)
                model.compile(keras.optimizers.Adam(3e-2), "sparse_categorical_crossentropy")
                model.fit(images.astype(np.float32), labels, batch_size=16, epochs=8, verbose=0)
            cache[arch] = (model, onnx_export.export_onnx(model, folder / f"{arch}.onnx"))
        return cache[arch]

    return get


def test_int8_is_integer_and_agrees_where_the_float_model_is_confident(onnx_export_of, tmp_path):
    model, float_path = onnx_export_of("tiny_cnn")
    calibration, _ = colour_images(32, seed=2)
    ticks = []
    int8_path = onnx_export.quantize_onnx_int8(float_path, tmp_path / "tiny_int8.onnx", calibration,
                                               progress=lambda: ticks.append(1))
    assert len(ticks) == len(calibration)  # one progress tick per calibration image

    proto = onnx.load(str(int8_path))
    assert {"QuantizeLinear", "DequantizeLinear"} <= {node.op_type for node in proto.graph.node}
    assert any(t.data_type == onnx.TensorProto.INT8 for t in proto.graph.initializer), "int8 weights"
    producers = {name: node for node in proto.graph.node for name in node.output}
    assert producers["probs"].op_type == "Softmax", "the softmax stays float, not quantized after"
    assert producers[producers["probs"].input[0]].op_type == "DequantizeLinear"
    # The calibration pins the input range to 0-255: raw pixels quantize exactly (scale 1, zero point 0).
    constants = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    first = next(node for node in proto.graph.node if node.op_type == "QuantizeLinear" and node.input[0] == "image")
    assert float(constants[first.input[1]]) == 1.0 and int(constants[first.input[2]]) == 0

    images, labels = colour_images(40, seed=3)
    float_probs = session(float_path).run(None, {"image": images.astype(np.float32)})[0]
    int8_probs = session(int8_path).run(None, {"image": images.astype(np.float32)})[0]
    np.testing.assert_allclose(int8_probs.sum(axis=1), 1.0, rtol=1e-4)
    confident = float_probs.max(axis=1) > 0.8
    assert confident.sum() >= 20, "the trained tiny model should be confident on most colour images"
    agreement = np.mean(float_probs[confident].argmax(1) == int8_probs[confident].argmax(1))
    assert agreement >= 0.9, agreement


def test_int8_of_mobilenet_runs_and_records_its_settings(onnx_export_of, tmp_path):
    _, float_path = onnx_export_of("mobilenet_v3_small")
    int8_path = onnx_export.quantize_onnx_int8(float_path, tmp_path / "m_int8.onnx", random_images(8, 4),
                                               progress=False)
    assert {"QuantizeLinear", "DequantizeLinear"} <= onnx_export.integer_op_types(int8_path)
    probs = session(int8_path).run(None, {"image": random_images(3, 5).astype(np.float32)})[0]
    assert probs.shape == (3, NUM_CLASSES) and np.all(np.isfinite(probs))
    fields = onnx_export.onnx_sidecar_fields(int8_path)
    assert fields["variant"] == "int8" and fields["batch"] is None and fields["img_size"] == SIZE
    settings = fields["extra"]["onnx"]["quantization"]
    assert settings["format"] == "qdq" and settings["activations"] == "uint8" and settings["softmax"] == "float"


def test_quantize_rejects_wrong_inputs(onnx_export_of, tmp_path):
    _, float_path = onnx_export_of("tiny_cnn")
    with pytest.raises(EdgeclsError, match="calibration images"):
        onnx_export.quantize_onnx_int8(float_path, tmp_path / "x.onnx", np.zeros((2, 16, 16, 3), np.uint8))
    with pytest.raises(EdgeclsError, match="format"):
        onnx_export.quantize_onnx_int8(float_path, tmp_path / "x.onnx", random_images(2), quant_format="qnn")
    int8_path = onnx_export.quantize_onnx_int8(float_path, tmp_path / "q.onnx", random_images(2), progress=False)
    with pytest.raises(EdgeclsError, match="already quantized"):
        onnx_export.quantize_onnx_int8(int8_path, tmp_path / "x.onnx", random_images(2))
    assert not (tmp_path / "x.onnx").exists()


def test_sidecar_is_embedded_and_round_trips(onnx_export_of, tmp_path):
    from edgecls.deploy.runtimes import open_model
    from edgecls.model_metadata import embedded_sidecar
    from edgecls.publish import write_sidecar
    from edgecls.sidecar import build_sidecar, read_sidecar

    _, float_path = onnx_export_of("tiny_cnn")
    path = tmp_path / "tiny.onnx"
    path.write_bytes(float_path.read_bytes())
    assert embedded_sidecar(path) is None

    fields = onnx_export.onnx_sidecar_fields(path)
    assert fields["variant"] == "float32" and fields["input_dtype"] == "float32"
    sidecar = build_sidecar(model_file=path, labels=["red", "green", "blue"], architecture="tiny_cnn",
                            accuracy={"top1": np.float32(0.5)}, **fields)
    json_path = write_sidecar(path, sidecar)

    embedded = embedded_sidecar(path)
    assert embedded["labels"] == ["red", "green", "blue"] and embedded["input"]["shape"] == [None, SIZE, SIZE, 3]
    assert embedded["accuracy"] == {"top1": 0.5} and "size" not in embedded
    written = read_sidecar(path)
    assert json_path == path.with_suffix(".json") and written["size"]["bytes"] == path.stat().st_size

    again = dict(embedded, variant="renamed")  # embedding again replaces, never duplicates
    write_sidecar(path, again)
    keys = [prop.key for prop in onnx.load(str(path)).metadata_props]
    assert keys.count(onnx_export.METADATA_KEY) == 1
    assert embedded_sidecar(path)["variant"] == "renamed"

    runtime = open_model(path)  # still a valid model, read with its sidecar
    assert runtime.labels == ["red", "green", "blue"]
    assert runtime.predict(random_images(2)).shape == (2, NUM_CLASSES)


def test_unreadable_embedded_metadata_is_a_model_file_error(onnx_export_of, tmp_path):
    from edgecls.errors import ModelFileError
    from edgecls.model_metadata import embedded_sidecar

    _, float_path = onnx_export_of("tiny_cnn")
    proto = onnx.load(str(float_path))
    proto.metadata_props.add(key=onnx_export.METADATA_KEY, value="{not json")
    path = tmp_path / "bad.onnx"
    onnx.save(proto, str(path))
    with pytest.raises(ModelFileError, match="unreadable"):
        embedded_sidecar(path)
    with pytest.raises(ModelFileError, match="not found"):
        embedded_sidecar(tmp_path / "missing.onnx")


@keras.utils.register_keras_serializable(package="edgecls_tests")
class LogGamma(keras.layers.Layer):
    def call(self, x):
        return tf.math.lgamma(x + 1.0)  # Lgamma has no ONNX equivalent in tf2onnx 1.17


def test_unsupported_layer_is_named_in_one_line(tmp_path):
    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = LogGamma(name="block/my_lgamma")(x)  # a "/" in a layer name, as MobileNetV3's have
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax", name="head_probs")(x)
    model = keras.Model(inputs, outputs, name="user_model")
    with pytest.raises(EdgeclsError) as info:
        onnx_export.export_onnx(model, tmp_path / "user.onnx")
    message = str(info.value)
    assert "layer 'block/my_lgamma' (Lgamma)" in message and "\n" not in message
    assert not (tmp_path / "user.onnx").exists()


@keras.utils.register_keras_serializable(package="edgecls_tests")
class CaffeNormalize(keras.layers.Layer):
    """RGB -> BGR minus the mean, divided per channel: the ops a user's preprocessing layer makes."""

    def call(self, x):
        x = tf.reverse(x, axis=[-1])
        return (x - tf.constant([103.9, 116.8, 123.7])) * tf.constant([1 / 58.0, 1 / 57.0, 1 / 57.4])


def test_custom_preprocessing_layers_convert(tmp_path):
    from edgecls.models import layers

    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    x = CaffeNormalize(name="caffe")(inputs)
    if hasattr(layers, "ChannelShift"):  # edgecls' own mean-subtraction layer
        x = layers.ChannelShift((1.0, -2.0, 0.5), name="shift")(x)
    x = keras.layers.Conv2D(4, 3, strides=2, name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax", name="head_probs")(x)
    model = keras.Model(inputs, outputs, name="preprocessed")
    path = onnx_export.export_onnx(model, tmp_path / "n.onnx")
    assert onnx_export.check_parity(model, path, random_images(4))["ok"]


def test_bad_opset_and_dynamic_input_are_user_errors(onnx_export_of, tmp_path):
    model, float_path = onnx_export_of("tiny_cnn")
    with pytest.raises(EdgeclsError, match="opset"):
        onnx_export.export_onnx(model, tmp_path / "m.onnx", opset=9)
    inputs = keras.Input((None, None, 3))
    flexible = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(inputs))
    with pytest.raises(EdgeclsError, match="fixed"):
        onnx_export.export_onnx(flexible, tmp_path / "f.onnx")
    assert json.loads(json.dumps(onnx_export.onnx_sidecar_fields(float_path)))["fmt"] == "onnx"
