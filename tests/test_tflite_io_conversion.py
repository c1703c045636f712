"""The uint8<->int8 conversions at an int8 model's two ends run inside XNNPACK, outputs unchanged to the bit."""

import sys
from pathlib import Path

import numpy as np
from deploy_helpers import tflite_outputs

from edgecls.converters import tflite_convert
from edgecls.converters.tflite_inspect import inspect_tflite
from edgecls.models import get_model_spec
from edgecls.models.modeling import build_model

SIZE = 32


def _int8_with_and_without_split():
    model = build_model("mobilenet_v3_small", SIZE, 3, **get_model_spec("mobilenet_v3_small").test_kwargs)
    images = np.random.default_rng(0).integers(0, 256, (8, SIZE, SIZE, 3)).astype(np.uint8)
    plain = tflite_convert.convert(model, "int8", calibration=images, delegable_io=False)
    return plain, tflite_convert.convert(model, "int8", calibration=images)


def test_input_quantize_is_delegated_and_exact():
    plain, split = _int8_with_and_without_split()
    images = np.random.default_rng(1).integers(0, 256, (6, SIZE, SIZE, 3)).astype(np.uint8)
    images[0] = 0
    images[1] = 255
    np.testing.assert_array_equal(tflite_outputs(split, images), tflite_outputs(plain, images))

    before, after = inspect_tflite(plain), inspect_tflite(split)
    assert after["ops"]["DEQUANTIZE"] == 2 and after["ops"]["QUANTIZE"] == before["ops"]["QUANTIZE"] == 2
    assert after["input"] == before["input"] == {"shape": [1, SIZE, SIZE, 3], "dtype": "uint8", "scale": 1.0,
                                                 "zero_point": 0}
    assert after["output"] == before["output"]
    # Before, builtin QUANTIZE kernels read the pixels and wrote the logits; now XNNPACK does both.
    assert after["float_ops"] == [] and after["xnnpack_partitions"] == 1 and after["xnnpack_whole_graph"]
    assert not before["xnnpack_whole_graph"]


def test_models_without_a_uint8_input_are_left_alone():
    model = build_model("tiny_cnn", SIZE, 3)
    images = np.random.default_rng(0).integers(0, 256, (4, SIZE, SIZE, 3)).astype(np.uint8)
    blob = tflite_convert.convert(model, "int8", calibration=images, io="int8")
    assert tflite_convert.with_delegable_io_conversion(blob) == blob
    assert "DEQUANTIZE" not in inspect_tflite(blob)["ops"]


def test_litert_op_profiler_times_every_op_and_sees_where_each_runs():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from litert_op_profile import OpProfiler

    plain, split = _int8_with_and_without_split()
    before, after = OpProfiler(plain).profile(20, warmup=2), OpProfiler(split).profile(20, warmup=2)
    assert [op["name"] for op in before["ops"] if op["kind"] == "tflite"] == ["QUANTIZE", "QUANTIZE"]
    assert {op["kind"] for op in after["ops"]} == {"xnnpack"}
    assert len(after["ops"]) > 30 and all(op["calls"] == 20 for op in after["ops"])
    assert 0 < sum(op["mean_us"] for op in after["ops"]) <= after["run_mean_us"]
    assert any("DWConv" in op["name"] for op in after["ops"])
