"""What an ONNX file says about itself: its input, its integer ops, and the embedded sidecar.

Light on purpose (onnx and the stdlib, no TensorFlow, no onnxruntime), so the deploy side can
read an exported model's sidecar from the model itself. ``embed_metadata`` stores the sidecar as
JSON in ``metadata_props["edgecls_sidecar"]`` (through ``edgecls.model_metadata``, which also
reads it back, as the deploy runtimes do when no sidecar JSON is beside the file);
``onnx_export`` stores its quantization settings under ``"edgecls_quantization"``.
"""

from __future__ import annotations

import json

import onnx

from edgecls.errors import ModelFileError
from edgecls.model_metadata import ONNX_KEY, load_onnx  # noqa: F401 - load_onnx re-exported
from edgecls.model_metadata import set_onnx_property as set_metadata  # noqa: F401 - onnx_export uses it

METADATA_KEY = ONNX_KEY
QUANT_METADATA_KEY = "edgecls_quantization"
INTEGER_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "ConvInteger",
                         "MatMulInteger", "QLinearConv", "QLinearMatMul", "QLinearAdd", "QLinearMul",
                         "QLinearGlobalAveragePool", "QLinearSigmoid", "QLinearConcat", "QGemm"})


def integer_op_types(model) -> set[str]:
    """Integer-arithmetic op types in an ONNX model (a path or ModelProto); empty for float models."""
    proto = model if isinstance(model, onnx.ModelProto) else load_onnx(model)
    return {node.op_type for node in proto.graph.node if node.op_type in INTEGER_OPS}


def onnx_sidecar_fields(onnx_path) -> dict:
    """The ``build_sidecar`` keyword arguments an ONNX file determines by itself.

    ``build_sidecar(model_file=path, labels=..., architecture=..., source_run=..., accuracy=...,
    **onnx_sidecar_fields(path))``: the int8 model still takes float32 pixels 0–255 and returns
    float probabilities, so input/output quantization stay at their defaults.
    """
    proto = load_onnx(onnx_path)
    input_name, (height, width, _channels) = onnx_image_input(proto, onnx_path)
    integer = sorted(integer_op_types(proto))
    props = {prop.key: prop.value for prop in proto.metadata_props}
    onnx_info = {
        "opset": next((entry.version for entry in proto.opset_import if entry.domain in ("", "ai.onnx")), None),
        "input_name": input_name,
        "output_name": proto.graph.output[0].name,
        "integer_ops": integer,
    }
    if QUANT_METADATA_KEY in props:
        try:
            onnx_info["quantization"] = json.loads(props[QUANT_METADATA_KEY])
        except ValueError:
            pass  # informative only
    if height != width:
        onnx_info["input_hw"] = [height, width]
    return {"fmt": "onnx", "variant": "int8" if integer else "float32", "img_size": height,
            "input_dtype": "float32", "output_kind": "probabilities", "output_dtype": "float32",
            "batch": None, "extra": {"onnx": onnx_info}}


def onnx_image_input(proto, path) -> tuple[str, tuple[int, int, int]]:
    initializers = {tensor.name for tensor in proto.graph.initializer}
    inputs = [value for value in proto.graph.input if value.name not in initializers]
    if len(inputs) != 1:
        raise ModelFileError(f"{path}: expected one image input, found {len(inputs)}")
    dims = [dim.dim_value if dim.HasField("dim_value") else None for dim in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or None in dims[1:]:
        raise ModelFileError(f"{path}: expected a fixed-size (N, H, W, C) image input, found {dims}")
    return inputs[0].name, (int(dims[1]), int(dims[2]), int(dims[3]))



