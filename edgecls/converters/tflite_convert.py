"""Keras model → TFLite flatbuffer: float32, float16, dynamic-range and full-integer int8.

Conversions use a concrete function with a fixed batch of 1: edge inference is one image at a
time, and a static batch lets the converter resolve shapes (EfficientNet's squeeze-excite
reshape otherwise becomes SHAPE/PACK ops that no delegate takes, splitting the graph).
Integer models end at the logits: XNNPACK has no int8 SOFTMAX, and the runtimes apply the softmax
on the dequantized logits (the sidecar says so).
"""

from __future__ import annotations

import numpy as np

from edgecls.converters.calibration import pinned_calibration_inputs
from edgecls.converters.speed_rewrites import faster_equivalent
from edgecls.errors import EdgeclsError, first_line
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


def int8_graph(model):
    """The graph every int8 route converts or trains: the logits, speed-rewritten
    (:func:`~edgecls.converters.speed_rewrites.faster_equivalent`)."""
    return faster_equivalent(logits_model(model))[0]


def concrete_function(model):
    """The model's inference call traced at batch 1 on float32 NHWC images named ``image``.

    Converters start from this rather than from the Keras model, so every TFLite file has the
    same fixed input signature whatever the model was built with.
    """
    _, height, width, channels = model.input_shape
    spec = tf.TensorSpec([1, height, width, channels], tf.float32, name="image")
    return tf.function(lambda image: model(image, training=False)).get_concrete_function(spec)


def converter_for(model):
    """A TFLiteConverter for ``model``'s batch-1 concrete function, converted from the graph itself.

    The converter's default first saves the model as a SavedModel, tracing every Keras layer
    again: 16 s against 0.6 s for an int8 MobileNetV3-Small at 32 px here, for the same ops and
    quantization. That SavedModel step is also what writes the serving signature, so every
    converted file gets it back from :func:`with_serving_signature`.
    """
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete_function(model)], model)
    converter.experimental_lower_to_saved_model = False
    return converter


def with_serving_signature(blob: bytes) -> bytes:
    """``blob`` with a ``serving_default`` signature (input ``image``, output ``output_0``) if it has none.

    LiteRT's signature runners and CompiledModel look models up by signature; edgecls' own
    runtimes use the input and output details, which need none.
    """
    utils = _tf_module("lite.tools.flatbuffer_utils")
    schema = _tf_module("lite.python.schema_py_generated")
    model = utils.convert_bytearray_to_object(bytearray(blob))
    if model.signatureDefs:
        return blob
    graph = model.subgraphs[0]

    def tensor_map(name: str, index: int):
        entry = schema.TensorMapT()
        entry.name, entry.tensorIndex = name, int(index)
        return entry

    signature = schema.SignatureDefT()
    signature.signatureKey, signature.subgraphIndex = "serving_default", 0
    signature.inputs = [tensor_map("image", graph.inputs[0])]
    signature.outputs = [tensor_map("output_0", graph.outputs[0])]
    model.signatureDefs = [signature]
    return bytes(utils.convert_object_to_bytearray(model))


def with_delegable_io_conversion(blob: bytes) -> bytes:
    """``blob`` with each uint8↔int8 QUANTIZE at its two ends split into DEQUANTIZE + QUANTIZE.

    XNNPACK takes no QUANTIZE between two integer types, so converting the uint8 pixels ran in
    TFLite's builtin kernel, which has no vector path on x86: about a tenth of
    MobileNetV3-Small-224 int8's time (benchmarks/results/int8_profile.md). Through float, XNNPACK takes
    the pair, and fuses the input's with the normalisation after it into one elementwise op; with
    the logits' pair too, the whole graph is one XNNPACK partition. Exact: a uint8 or int8 value
    is an integer, which float holds exactly, so the requantized values are the same. The model's
    input and output tensors (uint8; input scale 1, zero point 0) are unchanged.
    """
    utils = _tf_module("lite.tools.flatbuffer_utils")
    schema = _tf_module("lite.python.schema_py_generated")
    model = utils.convert_bytearray_to_object(bytearray(blob))
    graph = model.subgraphs[0]
    codes = [max(code.builtinCode, code.deprecatedBuiltinCode) for code in model.operatorCodes]
    quantize, dequantize = schema.BuiltinOperator.QUANTIZE, schema.BuiltinOperator.DEQUANTIZE
    integer = {schema.TensorType.UINT8, schema.TensorType.INT8}
    ends = set(graph.inputs) | set(graph.outputs)
    split = [op for op in graph.operators
             if codes[op.opcodeIndex] == quantize and {op.inputs[0], op.outputs[0]} & ends
             and graph.tensors[op.inputs[0]].type in integer and graph.tensors[op.outputs[0]].type in integer
             and graph.tensors[op.inputs[0]].type != graph.tensors[op.outputs[0]].type]
    if not split:
        return blob
    if dequantize not in codes:
        code = schema.OperatorCodeT()
        code.builtinCode = code.deprecatedBuiltinCode = dequantize
        code.version = 1
        model.operatorCodes.append(code)
        codes.append(dequantize)
    for op in split:
        source = graph.tensors[op.inputs[0]]
        real = schema.TensorT()
        real.name = (source.name if isinstance(source.name, bytes) else str(source.name).encode()) + b"/float"
        real.type, real.buffer, real.shape = schema.TensorType.FLOAT32, 0, list(source.shape)
        if source.shapeSignature is not None:
            real.shapeSignature = list(source.shapeSignature)
        graph.tensors.append(real)
        to_float = schema.OperatorT()
        to_float.opcodeIndex = codes.index(dequantize)
        to_float.inputs, to_float.outputs = [op.inputs[0]], [len(graph.tensors) - 1]
        op.inputs = [len(graph.tensors) - 1]
        graph.operators.insert(graph.operators.index(op), to_float)
    return bytes(utils.convert_object_to_bytearray(model))


def _tf_module(name: str):
    # TensorFlow's TFLite internals (the flatbuffer object API) are no attributes of ``tf``;
    # ``tf`` came from edgecls.tf, so TF_USE_LEGACY_KERAS is set before this import.
    import importlib

    return importlib.import_module(f"{tf.__name__}.{name}")


def convert(model, variant: str, *, calibration: np.ndarray | None = None, io: str = "uint8",
            progress=None, delegable_io: bool = True, speed_rewrites: bool = True) -> bytes:
    """Convert ``model`` (RGB 0–255 float input) to a TFLite flatbuffer of the given variant.

    The graph converted is :func:`~edgecls.converters.speed_rewrites.faster_equivalent` of the model
    (the same function, faster under XNNPACK). ``delegable_io=False`` keeps the converter's own
    uint8→int8 input QUANTIZE (see :func:`with_delegable_io_conversion`) and
    ``speed_rewrites=False`` converts the graph as built: benchmarks use them to measure what each buys.
    """
    if variant not in VARIANTS:
        raise EdgeclsError(f"unknown TFLite variant '{variant}'; choose one of {', '.join(VARIANTS)}")
    integer = variant == "int8"
    if not speed_rewrites:
        graph = logits_model(model) if integer else model
    else:
        graph = int8_graph(model) if integer else faster_equivalent(model)[0]
    converter = converter_for(graph)
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
        blob = converter.convert()
    except Exception as err:  # noqa: BLE001 - the converter raises ConverterError and friends
        raise EdgeclsError(f"TFLite conversion ({variant}) failed: {first_line(err)}") from None
    return with_serving_signature(with_delegable_io_conversion(blob) if integer and delegable_io else blob)


def convert_qat(qat_model, *, io: str = "uint8") -> bytes:
    """Convert a quantization-aware-trained model: every range comes from its fake-quant ops."""
    if io not in IO_TYPES:
        raise EdgeclsError(f"unknown --io '{io}'; choose uint8, int8 or float")
    pin_input_range(qat_model)
    converter = converter_for(qat_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.inference_input_type = IO_TYPES[io]
    converter.inference_output_type = IO_TYPES[io]
    converter._experimental_disable_per_channel_quantization_for_dense_layers = True  # noqa: SLF001 (see convert)
    try:
        blob = converter.convert()
    except Exception as err:  # noqa: BLE001
        raise EdgeclsError(f"TFLite conversion of the QAT model failed: {first_line(err)}") from None
    return with_serving_signature(with_delegable_io_conversion(blob))


def pin_input_range(qat_model) -> None:
    """Set the QAT model's input quantizer to the pixel domain 0–255.

    The input quantizer learned the range of the pixels it saw; pinning it keeps uint8 input at
    scale 1, zero point 0 (raw pixels on the device). Found by type, not by name: Keras numbers
    the names of later models in one process (``quantize_layer_3``).
    """
    for layer in qat_model.layers:
        if type(layer).__name__ == "QuantizeLayer":
            for weight in layer.weights:
                if weight.name.endswith("_min:0"):
                    weight.assign(0.0)
                elif weight.name.endswith("_max:0"):
                    weight.assign(255.0)
