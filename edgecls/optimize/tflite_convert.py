"""Keras model → TFLite flatbuffer: float32, float16, dynamic-range and full-integer int8.

Conversions use a concrete function with a fixed batch of 1: edge inference is one image at a
time, and a static batch lets the converter resolve shapes (EfficientNet's squeeze-excite
reshape otherwise becomes SHAPE/PACK ops that no delegate takes, splitting the graph).
Integer models end at the logits: XNNPACK has no int8 SOFTMAX, and the runtimes apply the softmax
on the dequantized logits (the sidecar says so).
"""

from __future__ import annotations

import numpy as np

from edgecls.errors import EdgeclsError, first_line
from edgecls.optimize.calibration import pinned_calibration_inputs
from edgecls.tf import keras, tf

VARIANTS = ("float32", "float16", "dynamic", "int8")
IO_TYPES = {"uint8": tf.uint8, "int8": tf.int8, "float": tf.float32}


def logits_model(model):
    """The same graph without its final softmax (an identity on the arg-max)."""
    try:
        logits = model.get_layer("head_logits").output
    except ValueError:
        return model
    return keras.Model(model.input, logits, name=f"{model.name}_logits")


def concrete_function(model):
    """The model's inference call traced at batch 1 on float32 NHWC images named ``image``.

    Converters start from this rather than from the Keras model, so every TFLite file has the
    same fixed input signature whatever the model was built with.
    """
    _, height, width, channels = model.input_shape
    spec = tf.TensorSpec([1, height, width, channels], tf.float32, name="image")
    return tf.function(lambda image: model(image, training=False)).get_concrete_function(spec)


def convert(model, variant: str, *, calibration: np.ndarray | None = None, io: str = "uint8",
            progress=None) -> bytes:
    """Convert ``model`` (RGB 0–255 float input) to a TFLite flatbuffer of the given variant."""
    if variant not in VARIANTS:
        raise EdgeclsError(f"unknown TFLite variant '{variant}'; choose one of {', '.join(VARIANTS)}")
    integer = variant == "int8"
    graph = logits_model(model) if integer else model
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete_function(graph)], graph)
    if variant == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif integer:
        if calibration is None or len(calibration) == 0:
            raise EdgeclsError("int8 conversion needs calibration images")
        if io not in IO_TYPES:
            raise EdgeclsError(f"unknown --io '{io}'; choose uint8, int8 or float")

        def representative():
            for sample in pinned_calibration_inputs(calibration):
                if progress is not None:
                    progress()
                yield [sample]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = IO_TYPES[io]
        converter.inference_output_type = IO_TYPES[io]
        # Per-tensor Dense weights: tflite-runtime 2.14 (Raspberry Pi OS Bookworm's) segfaults on
        # aarch64 with the per-channel Dense weights newer converters write (seen under emulation).
        converter._experimental_disable_per_channel_quantization_for_dense_layers = True  # noqa: SLF001
    try:
        return converter.convert()
    except Exception as err:  # noqa: BLE001 - the converter raises ConverterError and friends
        raise EdgeclsError(f"TFLite conversion ({variant}) failed: {first_line(err)}") from None


def convert_qat(qat_model, *, io: str = "uint8") -> bytes:
    """Convert a quantization-aware-trained model: every range comes from its fake-quant ops."""
    if io not in IO_TYPES:
        raise EdgeclsError(f"unknown --io '{io}'; choose uint8, int8 or float")
    _pin_input_range(qat_model)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete_function(qat_model)], qat_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.inference_input_type = IO_TYPES[io]
    converter.inference_output_type = IO_TYPES[io]
    converter._experimental_disable_per_channel_quantization_for_dense_layers = True  # noqa: SLF001 (see convert)
    try:
        return converter.convert()
    except Exception as err:  # noqa: BLE001
        raise EdgeclsError(f"TFLite conversion of the QAT model failed: {first_line(err)}") from None


def _pin_input_range(qat_model) -> None:
    # The input quantizer learned the range of the pixels it saw; the input domain is 0–255, and
    # pinning it keeps uint8 input at scale 1, zero point 0 (raw pixels on the device).
    for layer in qat_model.layers:
        if layer.name == "quantize_layer":
            for weight in layer.weights:
                if weight.name.endswith("_min:0"):
                    weight.assign(0.0)
                elif weight.name.endswith("_max:0"):
                    weight.assign(255.0)
