"""Optimize stage: int8 I/O options, QAT and pruning of a run, sidecars, errors.

Int8 with no float islands and QAT to a pure int8 graph, for every registered architecture, are
in the shared model checks (tests/model_checks.py).
"""

import json

import numpy as np
import pytest
from model_checks import check_standard_metadata

from edgecls.compression.qat import quantize_aware_model
from edgecls.converters import tflite_convert
from edgecls.converters.tflite_inspect import inspect_tflite
from edgecls.errors import EdgeclsError
from edgecls.models import get_model_spec
from edgecls.models.modeling import build_model
from edgecls.tf import keras

SIZE = 32
SIDECAR_KEYS = {"schema", "model_file", "format", "variant", "architecture", "labels", "input", "output",
                "source_run", "accuracy", "size", "versions"}


def _model(arch):
    return build_model(arch, SIZE, 3, weights="none", **get_model_spec(arch).test_kwargs)


def _images(count=12):
    return np.random.default_rng(0).integers(0, 256, (count, SIZE, SIZE, 3)).astype(np.uint8)


def test_every_variant_keeps_the_serving_signature():
    # Converted straight from the graph (no SavedModel step), the signature is written back.
    from edgecls.deploy.litert import tflite_interpreter

    model, images = _model("tiny_cnn"), _images()
    for variant in tflite_convert.VARIANTS:
        interpreter = tflite_interpreter(model_content=tflite_convert.convert(model, variant, calibration=images))
        signatures = interpreter.get_signature_list()
        assert signatures == {"serving_default": {"inputs": ["image"], "outputs": ["output_0"]}}, variant
        runner = interpreter.get_signature_runner("serving_default")
        detail = interpreter.get_input_details()[0]
        assert runner(image=images[:1].astype(detail["dtype"]))["output_0"].shape[-1] == 3


def test_int8_io_options():
    model, images = _model("tiny_cnn"), _images()
    assert inspect_tflite(tflite_convert.convert(model, "int8", calibration=images, io="int8"))["input"]["dtype"] == "int8"
    info = inspect_tflite(tflite_convert.convert(model, "int8", calibration=images, io="float"))
    assert info["input"]["dtype"] == "float32"


def test_unsupported_layer_in_a_users_model_is_named():
    class Mystery(keras.layers.Layer):
        def call(self, x):
            return x * 2.0

    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)
    x = Mystery(name="my_mystery_layer")(x)
    outputs = keras.layers.Dense(3, name="head_logits")(keras.layers.GlobalAveragePooling2D()(x))
    with pytest.raises(EdgeclsError, match="my_mystery_layer"):
        quantize_aware_model(keras.Model(inputs, outputs))


def test_quantize_writes_variants_with_complete_sidecars(colour_run):
    from edgecls.compression.quantization import quantize_run

    records = quantize_run(colour_run, int8=True, float16=True, dynamic=True, calibration=20, verbose=0)
    assert [r.variant for r in records] == ["float16", "dynamic", "int8"]
    for record in records:
        sidecar = json.loads(record.path.with_suffix(".json").read_text())
        assert SIDECAR_KEYS <= set(sidecar), SIDECAR_KEYS - set(sidecar)
        assert sidecar["labels"] == ["class0", "class1", "class2"]
        assert sidecar["input"]["resize"] == "pil-bilinear-squash"
        assert sidecar["accuracy"]["top1"] == pytest.approx(record.accuracy)
        assert sidecar["size"]["bytes"] == record.path.stat().st_size
        assert "tensorflow" in sidecar["versions"] and "flatbuffers" in sidecar["versions"]
        info = sidecar["tflite"]["standard_metadata"]
        assert check_standard_metadata(record.path)["tflite"]["standard_metadata"] == info
        assert info["name"] == colour_run.name and record.variant in info["description"] and info["author"] == ""
    int8 = json.loads((colour_run / "exports" / "int8.json").read_text())
    assert int8["output"]["kind"] == "logits" and int8["input"]["dtype"] == "uint8"
    assert int8["tflite"]["float_ops"] == []
    assert abs(int8["accuracy"]["top1"] - int8["accuracy"]["float_top1"]) <= 0.1


def test_int8_with_float_io_is_described_as_logits(colour_run):
    from edgecls.compression.quantization import quantize_run
    from edgecls.deploy.runtimes import open_model

    (record,) = quantize_run(colour_run, int8=True, io="float", calibration=20, verbose=0)
    sidecar = json.loads(record.path.with_suffix(".json").read_text())
    assert sidecar["output"]["kind"] == "logits" and sidecar["output"]["dtype"] == "float32"
    model = open_model(record.path)
    probs = model.predict(np.zeros((2, SIZE, SIZE, 3), dtype=np.uint8))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_qat_tflite_matches_the_qat_keras_model(colour_run):
    from edgecls.compression.quantization import quantize_run

    (record,) = quantize_run(colour_run, qat=True, epochs=1, verbose=0)
    sidecar = json.loads(record.path.with_suffix(".json").read_text())
    assert abs(record.accuracy - sidecar["qat"]["keras_top1"]) <= 0.005 + 1e-9
    check_standard_metadata(record.path)


def test_pruning_reaches_its_sparsity_and_the_result_quantizes(colour_run):
    from edgecls.compression.pruning import prune_run
    from edgecls.compression.quantization import quantize_run

    report = prune_run(colour_run, target=0.5, epochs=2, verbose=0)
    pruned = {name: s for name, s in report["layer_sparsity"].items() if s > 0}
    assert pruned and all(s == pytest.approx(0.5, abs=0.02) for s in pruned.values())
    assert (colour_run / "exports" / "pruned.keras").is_file()
    (record,) = quantize_run(colour_run, int8=True, model="exports/pruned.keras", calibration=20, verbose=0)
    assert record.variant == "pruned_int8"
    assert _largest_kernel_sparsity(record.path) >= 0.47

    (kept,) = quantize_run(colour_run, qat=True, epochs=1, lr=1e-2, model="exports/pruned.keras",
                           preserve_sparsity=True, verbose=0)
    assert kept.variant == "pruned_qat_int8"
    assert _largest_kernel_sparsity(kept.path) >= 0.47
    for written in (record.path, kept.path):
        check_standard_metadata(written)
    with pytest.raises(EdgeclsError, match="--preserve-sparsity"):
        quantize_run(colour_run, int8=True, preserve_sparsity=True, verbose=0)


def _largest_kernel_sparsity(path) -> float:
    """Share of zeros in the largest int8 convolution kernel of a TFLite file."""
    from edgecls.deploy.litert import tflite_interpreter

    interpreter = tflite_interpreter(model_content=path.read_bytes(), use_xnnpack=False)
    interpreter.allocate_tensors()
    # Batch-1 activations are 4-D int8 too; kernels are [out_channels, h, w, in_channels].
    kernels = [t for t in interpreter.get_tensor_details()
               if t["dtype"] == np.int8 and len(t["shape"]) == 4 and t["shape"][0] > 1]
    largest = max(kernels, key=lambda t: int(np.prod(t["shape"])))
    return float(np.mean(interpreter.get_tensor(largest["index"]) == 0))


def test_tflite_and_onnx_variants_keep_separate_sidecars(colour_run):
    from edgecls.converters.exports import export_run

    records = export_run(colour_run, formats=["tflite", "onnx"], int8=True, calibration=20, verbose=0)
    assert [r.path.name for r in records] == ["float32.tflite", "int8.tflite", "onnx_float32.onnx", "onnx_int8.onnx"]
    exports = colour_run / "exports"
    assert json.loads((exports / "int8.json").read_text())["format"] == "tflite"
    assert json.loads((exports / "int8.json").read_text())["output"]["kind"] == "logits"
    assert json.loads((exports / "onnx_int8.json").read_text())["format"] == "onnx"
    assert oct((exports / "int8.tflite").stat().st_mode & 0o777) != oct(0o600), "exports readable by others"


def test_export_formats_and_errors(colour_run, tmp_path):
    from edgecls.converters.exports import export_run

    records = export_run(colour_run, formats=["tflite", "saved_model"], verbose=0)
    assert [r.variant for r in records] == ["float32", "saved_model"]
    assert (colour_run / "exports" / "saved_model" / "saved_model.pb").is_file()
    with pytest.raises(EdgeclsError, match="not a run folder"):
        export_run(tmp_path, verbose=0)
    with pytest.raises(EdgeclsError, match="unknown --format"):
        export_run(colour_run, formats=["caffe"], verbose=0)
