"""Post-training int8 in two steps — calibrate, then quantize — so the search can act in between.

``tflite_convert.convert(model, "int8")`` calibrates and quantizes in one call. Split apart (the
same two calls the converter makes inside: a calibrate-only conversion that records each
tensor's min/max, then ``mlir_quantize``), the recorded ranges can be narrowed before quantizing
(percentile ranges) and chosen ops can be left in float (per-op fallback), while every other
setting stays that of ``convert``: uint8 pixels in at scale 1 / zero point 0, logits out,
per-tensor Dense weights. Without either change the result is the very model ``convert`` makes.
"""

from __future__ import annotations

import warnings

import numpy as np

from edgecls.converters.calibration import pinned_calibration_inputs
from edgecls.converters.tflite_convert import (
    IO_TYPES,
    converter_for,
    int8_graph,
    with_delegable_io_conversion,
    with_serving_signature,
)
from edgecls.errors import EdgeclsError, first_line
from edgecls.tf import tf


def calibrate(model, calibration: np.ndarray) -> bytes:
    """A float TFLite model of ``model``'s logits whose tensors carry their calibrated min/max."""
    if calibration is None or len(calibration) == 0:
        raise EdgeclsError("int8 calibration needs at least one image")
    graph = int8_graph(model)  # the graph tflite_convert.convert converts
    converter = converter_for(graph)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([sample] for sample in pinned_calibration_inputs(calibration))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter._experimental_calibrate_only = True  # noqa: SLF001 - the converter's own first step
    try:
        return converter.convert()
    except Exception as err:  # noqa: BLE001 - the converter raises ConverterError and friends
        raise EdgeclsError(f"int8 calibration failed: {first_line(err, 300)}") from None


def quantize_calibrated(calibrated: bytes, *, float_nodes=(), io: str = "uint8") -> bytes:
    """Quantize a calibrated model; ``float_nodes`` (op output tensor names) stay float."""
    try:
        quantized = _tf_module("lite.python.convert").mlir_quantize(
            calibrated, disable_per_channel=False, input_data_type=IO_TYPES[io], output_data_type=IO_TYPES[io],
            denylisted_nodes=list(float_nodes) or None,
            # Per-tensor Dense weights, as tflite_convert.convert (tflite-runtime 2.14 on aarch64).
            disable_per_channel_for_dense_layers=True)
    except Exception as err:  # noqa: BLE001
        raise EdgeclsError(f"int8 quantization failed: {first_line(err, 300)}") from None
    # The same ends as tflite_convert.convert: uint8<->int8 through float, so XNNPACK runs them.
    return with_serving_signature(with_delegable_io_conversion(quantized))


def _tf_module(name: str):
    # TensorFlow's own TFLite internals (mlir_quantize, the flatbuffer object API) are no
    # attributes of the public ``tf`` namespace. ``tf`` above came from edgecls.tf, so
    # TF_USE_LEGACY_KERAS is already set: importing the submodule by name is safe here.
    import importlib

    return importlib.import_module(f"{tf.__name__}.{name}")


def _model_object(blob: bytes):
    return _tf_module("lite.tools.flatbuffer_utils").convert_bytearray_to_object(blob)


def _model_bytes(obj) -> bytes:
    return bytes(_tf_module("lite.tools.flatbuffer_utils").convert_object_to_bytearray(obj))


def op_outputs(calibrated: bytes) -> list[str]:
    """Output tensor names of the calibrated model's ops, in graph order (what ``float_nodes`` takes)."""
    graph = _model_object(calibrated).subgraphs[0]
    return [graph.tensors[op.outputs[0]].name.decode() for op in graph.operators]


def _activations(blob: bytes, images: np.ndarray, names: set[str]):
    """Yield {tensor name: float values} for each image, for the named tensors of a TFLite model."""
    from edgecls.deploy.litert import interpreter_class

    cls, _ = interpreter_class()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "intended for debugging": reading every tensor is the point here
        interpreter = cls(model_content=blob, num_threads=1, experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    wanted = [t for t in interpreter.get_tensor_details() if t["name"] in names]
    for image in images:
        value = image[None]
        if detail["dtype"] == np.float32:
            value = value.astype(np.float32)
        interpreter.set_tensor(detail["index"], value.astype(detail["dtype"]))
        interpreter.invoke()
        out = {}
        for tensor in wanted:
            raw = interpreter.get_tensor(tensor["index"])
            scale, zero_point = tensor["quantization"]
            if np.issubdtype(raw.dtype, np.integer) and scale:
                raw = (raw.astype(np.float32) - zero_point) * scale
            out[tensor["name"]] = np.asarray(raw, dtype=np.float32)
        yield out


def percentile_ranges(calibrated: bytes, images: np.ndarray, *, percentile: float = 99.99,
                      samples_per_image: int = 1024, seed: int = 0) -> bytes:
    """The calibrated model with each activation range narrowed to the given percentiles.

    Min/max calibration lets a handful of outlier activations stretch a tensor's range, and
    the 256 int8 steps then grow coarse for every ordinary value. Ranges are only ever
    narrowed (never widened), a range that starts at 0 (after ReLU) keeps its 0, and the input
    keeps exactly 0–255. Values are subsampled per image to keep memory flat on large models.
    """
    obj = _model_object(calibrated)
    graph = obj.subgraphs[0]
    inputs = set(graph.inputs)
    ranged = {graph.tensors[i].name.decode(): i for i in range(len(graph.tensors))
              if i not in inputs and _has_range(graph.tensors[i])}
    rng = np.random.default_rng(seed)
    collected: dict[str, list[np.ndarray]] = {name: [] for name in ranged}
    for values in _activations(calibrated, images, set(ranged)):
        for name, array in values.items():
            flat = array.ravel()
            if flat.size > samples_per_image:
                flat = flat[rng.integers(0, flat.size, samples_per_image)]
            collected[name].append(flat)
    for name, index in ranged.items():
        if not collected[name]:
            continue
        values = np.concatenate(collected[name])
        quant = graph.tensors[index].quantization
        low, high = float(quant.min[0]), float(quant.max[0])
        new_low = low if low == 0.0 else max(low, float(np.percentile(values, 100 - percentile)))
        new_high = min(high, float(np.percentile(values, percentile)))
        if new_high > new_low:
            quant.min, quant.max = [min(new_low, 0.0) if low <= 0.0 else new_low], [new_high]
    return _model_bytes(obj)


def _has_range(tensor) -> bool:
    quant = tensor.quantization
    return quant is not None and quant.min is not None and len(quant.min) == 1 and quant.max is not None


def rank_ops_by_error(calibrated: bytes, quantized: bytes, images: np.ndarray) -> list[tuple[str, float]]:
    """Ops ordered by the error they add, worst first: [(output tensor name, added error)].

    Each op's output is compared between the float (calibrated) model and the int8 one on the
    same images, as a normalised RMS error (RMS difference / RMS of the float values). Errors
    accumulate down the graph, so an op is charged only with the increase over the worst of
    its inputs: the ops where quantization itself hurts, as NNCF ranks quantizer groups.
    """
    obj = _model_object(calibrated)
    graph = obj.subgraphs[0]
    outputs = op_outputs(calibrated)
    wanted = set(outputs)
    squared_error: dict[str, float] = dict.fromkeys(wanted, 0.0)
    energy: dict[str, float] = dict.fromkeys(wanted, 0.0)
    for float_values, int8_values in zip(_activations(calibrated, images, wanted),
                                         _activations(quantized, images, wanted), strict=True):
        for name in wanted:
            if name in float_values and name in int8_values and float_values[name].shape == int8_values[name].shape:
                diff = float_values[name] - int8_values[name]
                squared_error[name] += float(np.sum(diff * diff))
                energy[name] += float(np.sum(float_values[name] ** 2))
    error = {name: (squared_error[name] / energy[name]) ** 0.5 if energy[name] > 0 else 0.0 for name in wanted}
    produced_by = {graph.operators[i].outputs[0]: outputs[i] for i in range(len(outputs))}
    added = []
    for op, name in zip(graph.operators, outputs, strict=True):
        upstream = [error.get(produced_by[i], 0.0) for i in op.inputs if i >= 0 and i in produced_by]
        added.append((name, error[name] - max(upstream, default=0.0)))
    return sorted(added, key=lambda item: -item[1])
