"""Keras model → ONNX (float32, dynamic batch) and ONNX int8 (onnxruntime static quantization).

The ONNX models keep the Keras contract: float32 RGB 0–255 input ``image`` of shape (N, H, W, 3),
normalisation inside, class probabilities out (``probs``). The int8 model has the same interface:
its first op quantizes the float pixels (scale 1, zero point 0) and its Softmax stays float.

tf2onnx quirks met on TF 2.21 / tf_keras 2.21 / tf2onnx 1.17:
- ``from_keras`` needs an explicit ``input_signature`` (it cannot read the save spec of a Keras 2
  model on TF >= 2.16); given one, it traces ``model(x, training=False)`` itself.
- It never raises on an op it cannot map: it logs an error and leaves the TensorFlow node in the
  graph, which then fails the ONNX checker with a cryptic message. We scan the graph for ops ONNX
  does not define and name the Keras layer they came from.
- Its transpose optimizer crashes on ``Conv (no bias) → Add(scalar constant)`` (``max()`` of an
  empty shape; tensorflow-onnx issue #1729 is the same family), e.g. MobileNetV3's hard-swish
  ``x + 3``. The failure is caught inside tf2onnx, logged with a traceback, and the whole pass is
  dropped: MobileNetV3-Small keeps ~100 Transposes. A subclass that gives scalar constants shape
  [1] (same broadcasting) lets the pass finish: 1 Transpose left.
- That pass leaves identity Reshapes ([-1, C, 1, 1] on an (N, C, 1, 1) tensor) before each
  squeeze-excite 1x1 convolution, and Keras' EfficientNet SE (pool → Squeeze → Reshape) is one
  too; they break onnxruntime's NCHWc layout (fp32) and put ~2 Transposes per SE block into the
  int8 graph, so ``drop_identity_reshapes`` removes them.
- Metadata, the embedded sidecar and the sidecar fields live in ``onnx_metadata`` (no TensorFlow
  needed to read them) and are importable from here too.
- edgecls' own layers (mobilenet_v3's hard-swish/hard-sigmoid pieces, layers.ChannelShift, the
  earlier ChannelNormalize with tf.reverse) are plain TF math and convert with no handler;
  EfficientNet's Rescaling/Normalization and MobileNetV3's Pad/depthwise convolutions too.
  Parity with Keras: max |diff| < 1e-6 on probabilities. Some BatchNormalization nodes stay
  unfolded in the file; onnxruntime folds them into the convolutions at load time.

Int8 settings, measured here (onnxruntime 1.31 CPU EP, AMD EPYC with AVX-512 VNNI, 1 thread,
batch 1, ORT_ENABLE_ALL; fp32 and int8 runs interleaved; untrained weights, latency does not
depend on their values). The machine was shared with TensorFlow jobs (load ~3 on 2 cores), so
the table gives the 10th percentile of 200 runs, the least disturbed figure; medians agree
within ~10 %.

  ms / image                              simple_cnn 32  mnv3-s 96  mnv3-s 0.35 96  effnet-b0 96
  fp32 (export_onnx)                            0.345       0.333       0.187          2.15
  int8 CHOSEN: QDQ, uint8 activations, int8     0.135       0.301       0.208          2.37
    weights per channel, quant_pre_process,
    identity Reshapes removed, Softmax float
  same, QOperator format                        0.135       0.300       0.209          2.22
  same, Softmax quantized too                   0.136       0.301       0.209          2.18
  same, per-tensor weights                      0.135       0.287       0.204          2.07
  QDQ int8 activations (onnxruntime default)    0.137       1.425       0.675          7.81
  An earlier round (medians; same machine, before the Reshape clean-up):
  fp32, tf2onnx as is (transpose pass lost)     0.343       0.338       0.198          2.89
  QDQ uint8/int8, no pre-process or clean-up    0.130       0.320       0.226          2.74
  QOperator uint8 activations, uint8 weights    0.301       0.396       0.256          3.18
  QOperator per channel + reduce_range          0.145       0.299         -              -
  only Conv/MatMul quantized (QOperator / QDQ)    -           -      0.287 / 0.277       -
  MobileNetV3-Small at 224: fp32 ~1.25-1.44, int8 ~1.10-1.35; simple_cnn at 96: 3.18 vs 1.13.

Reading: int8 activations (onnxruntime's default) run 3-10x slower than fp32 wherever there
are depthwise convolutions or elementwise ops, which have no fused s8s8 kernels on x86; uint8
activations with int8 weights fuse into QLinearConv/QLinearAdd/QLinearMul/QLinearSigmoid. Plain
CNNs then gain ~2.6x. MobileNetV3-Small gains ~10 % at 96-224 px; EfficientNet-B0 breaks even
(its 130 swish Sigmoid/Mul ops cost as much in int8 as in fp32, and onnxruntime fuses fp32
activations into its NCHWc convolutions); MobileNetV3-Small 0.35 at 96 px is bound by per-op
overhead and int8 is ~10 % slower. Measure with ``edgecls bench`` before choosing int8 ONNX.
A quantized Softmax returns probabilities in steps of 1/256 and ties the top-1 of unconfident
models, for no speed, so it stays float. Per-channel weights cost ~0-5 % and keep depthwise
convolutions accurate (per-tensor scales are what breaks int8 MobileNets). QDQ was chosen over
QOperator at equal speed: onnxruntime recommends it, other execution providers read it, and
onnxruntime fuses it at load time (ORT_ENABLE_EXTENDED or higher; the default ORT_ENABLE_ALL also
moves int8 convolutions to NHWC, which the speed above relies on). reduce_range is for x86 CPUs
without VNNI (uint8 x int8 saturation); it costs ~5 % here and is off by default.
``quant_pre_process`` runs without sympy (skip_symbolic_shape): ONNX shape inference suffices.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path

import numpy as np
import onnx

from edgecls.converters.calibration import pinned_calibration_inputs
from edgecls.converters.onnx_metadata import (  # noqa: F401 - the metadata helpers are public here too
    METADATA_KEY,
    QUANT_METADATA_KEY,
    integer_op_types,
    load_onnx,
    onnx_image_input,
    onnx_sidecar_fields,
    set_metadata,
)
from edgecls.errors import EdgeclsError, first_line
from edgecls.fsutil import atomic_path
from edgecls.metrics import top1_agreement

DEFAULT_OPSET = 17
OPSET_RANGE = (13, 18)  # 13: per-axis (per-channel) QuantizeLinear; 18: tf2onnx 1.17's newest
INPUT_NAME = "image"
OUTPUT_NAME = "probs"
PARITY_MAX_ABS_DIFF = 1e-3
QUANT_FORMATS = ("qdq", "qoperator")
QUANT_TYPES = ("uint8", "int8")


# --------------------------------------------------------------------------- export


def export_onnx(model, path, *, opset: int = DEFAULT_OPSET, output_name: str = OUTPUT_NAME) -> Path:
    """Write ``model`` as a float32 ONNX file with a dynamic batch; returns ``path``.

    Raises EdgeclsError naming the layer when the model uses a TensorFlow op tf2onnx cannot map.
    The file is checked with ``onnx.checker`` before it replaces anything at ``path``.
    """
    from edgecls.tf import tf

    if not OPSET_RANGE[0] <= int(opset) <= OPSET_RANGE[1]:
        raise EdgeclsError(f"ONNX opset {opset} is not supported; choose {OPSET_RANGE[0]}-{OPSET_RANGE[1]}")
    height, width, channels = _image_input_shape(model)
    import tf2onnx

    spec = (tf.TensorSpec([None, height, width, channels], tf.float32, name=INPUT_NAME),)
    try:
        with _quiet_tf2onnx():
            proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=int(opset),
                                                  optimizers=_tf2onnx_optimizers())
    except EdgeclsError:
        raise
    except Exception as err:  # noqa: BLE001 - tracing and conversion raise anything
        raise EdgeclsError(f"ONNX export of {model.name} failed: {first_line(err)}") from None
    _raise_on_unsupported_ops(proto, model, opset)
    if len(proto.graph.output) != 1:
        raise EdgeclsError(f"ONNX export expects one model output, {model.name} has {len(proto.graph.output)}")
    _rename_tensor(proto.graph, proto.graph.output[0].name, output_name)
    drop_identity_reshapes(proto)
    _save_checked(proto, path)
    return Path(path)


def check_parity(model, onnx_path, images_uint8, *, threads: int = 1) -> dict:
    """Run Keras and onnxruntime on the same uint8 images; the acceptance is ``result["ok"]``."""
    from edgecls.deploy.runtimes import open_model

    images = np.asarray(images_uint8)
    if images.ndim == 3:
        images = images[None]
    keras_probs = np.concatenate([model(images[i:i + 32].astype(np.float32), training=False).numpy()
                                  for i in range(0, len(images), 32)])
    onnx_probs = open_model(onnx_path, threads=threads, quiet=True).predict(images)
    diff = float(np.abs(keras_probs.astype(np.float32) - onnx_probs).max())
    agreement = top1_agreement(keras_probs, onnx_probs)
    return {"images": int(len(images)), "max_abs_diff": diff, "top1_agreement": agreement,
            "same_top1": agreement == 1.0, "ok": diff < PARITY_MAX_ABS_DIFF and agreement == 1.0}


def _image_input_shape(model) -> tuple[int, int, int]:
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise EdgeclsError(f"ONNX export expects one image input and one output; {model.name} has "
                           f"{len(model.inputs)} inputs and {len(model.outputs)} outputs")
    shape = tuple(model.input_shape)
    if len(shape) != 4 or any(dim is None for dim in shape[1:]):
        raise EdgeclsError(f"ONNX export needs a fixed (H, W, C) image input; {model.name} takes {shape}")
    return int(shape[1]), int(shape[2]), int(shape[3])


def _tf2onnx_optimizers():
    """tf2onnx's optimizer list with a transpose optimizer that survives scalar-constant Adds."""
    from tf2onnx import optimizer
    from tf2onnx.optimizer.transpose_optimizer import TransposeOptimizer

    default = getattr(optimizer, "_optimizers", None)  # not public: fall back to tf2onnx's own list
    if not isinstance(default, dict) or "optimize_transpose" not in default:
        return None

    class ScalarSafeTransposeOptimizer(TransposeOptimizer):
        def _add_handler(self, trans, node):
            constant = node.inputs[1]
            if constant.is_const():
                value = constant.get_tensor_value(as_list=False)
                if value.ndim == 0:  # [1] broadcasts exactly like a scalar against a 4-D tensor
                    constant.set_tensor_value(value.reshape(1))
            return super()._add_handler(trans, node)

    return {**default, "optimize_transpose": ScalarSafeTransposeOptimizer}


@contextlib.contextmanager
def _quiet_tf2onnx():
    # tf2onnx logs every step and prints tracebacks of optimizer passes it recovers from; what
    # matters to a user (unmapped ops) is found in the graph afterwards and reported in one line.
    logger = logging.getLogger("tf2onnx")
    previous = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(previous)


def _raise_on_unsupported_ops(proto, model, opset: int) -> None:
    unknown = [node for node in proto.graph.node if not onnx.defs.has(node.op_type, node.domain or "")]
    if not unknown:
        return
    # Node names are TF scopes, "<model>/<layer>/<op>"; layer names may hold "/" themselves
    # (MobileNetV3's "Conv/hard_swish"), so the longest layer name found as a scope wins.
    layer_names = sorted((layer.name for layer in model.layers if layer.name != model.name), key=len, reverse=True)
    by_layer: dict[str, set[str]] = {}
    for node in unknown:
        scoped = f"/{node.name}/"
        layer = next((name for name in layer_names if f"/{name}/" in scoped), node.name.rsplit("/", 1)[0])
        by_layer.setdefault(layer, set()).add(node.op_type)
    described = "; ".join(f"layer '{layer}' ({', '.join(sorted(ops))})" for layer, ops in list(by_layer.items())[:3])
    more = f" and {len(by_layer) - 3} more" if len(by_layer) > 3 else ""
    raise EdgeclsError(f"cannot export {model.name} to ONNX (opset {opset}): TensorFlow ops with no ONNX "
                       f"equivalent in {described}{more}; rewrite those layers with standard ops")


def _rename_tensor(graph, old: str, new: str) -> None:
    if old == new:
        return
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]
    for value in list(graph.output) + list(graph.value_info):
        if value.name == old:
            value.name = new


SHAPE_ONLY_OPS = ("Reshape", "Squeeze", "Unsqueeze", "Flatten")


def drop_identity_reshapes(proto) -> int:
    """Bypass Reshapes that restore a shape their input chain already had; returns how many.

    ``Reshape([-1, C, 1, 1])`` of an (N, C, 1, 1) tensor, or of ``Squeeze`` of one (Keras'
    squeeze-excite: pool → squeeze → reshape), is an identity that breaks onnxruntime's layout
    optimisations (NCHWc for fp32, NHWC for int8) and costs Transposes around each SE block.
    """
    inferred = onnx.shape_inference.infer_shapes(proto)
    shapes = {}
    for value in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [dim.dim_value if dim.HasField("dim_value") else None for dim in dims]
    constants = {tensor.name: tensor for tensor in proto.graph.initializer}
    producers = {name: node for node in proto.graph.node for name in node.output}
    graph_outputs = {value.name for value in proto.graph.output}

    def same_shape(name, target):
        source = shapes.get(name)
        return (bool(source) and len(source) == len(target) and None not in source[1:]
                and target[0] in (-1, 0, source[0]) and source[1:] == target[1:])

    removed = 0
    for node in list(proto.graph.node):
        if node.op_type != "Reshape" or node.input[1] not in constants or node.output[0] in graph_outputs:
            continue
        target = onnx.numpy_helper.to_array(constants[node.input[1]]).tolist()
        source = node.input[0]
        while not same_shape(source, target) and source in producers and producers[source].op_type in SHAPE_ONLY_OPS:
            source = producers[source].input[0]
        if not same_shape(source, target):
            continue
        for other in proto.graph.node:
            other.input[:] = [source if name == node.output[0] else name for name in other.input]
        proto.graph.node.remove(node)
        removed += 1
    _drop_dead_nodes(proto)
    return removed


def _drop_dead_nodes(proto) -> None:
    wanted = {value.name for value in proto.graph.output}
    changed = True
    while changed:
        used = {name for node in proto.graph.node for name in node.input} | wanted
        dead = [node for node in proto.graph.node if not any(name in used for name in node.output)]
        for node in dead:
            proto.graph.node.remove(node)
        changed = bool(dead)
    used = {name for node in proto.graph.node for name in node.input}
    for tensor in list(proto.graph.initializer):
        if tensor.name not in used:
            proto.graph.initializer.remove(tensor)


def _save_checked(proto, path) -> None:
    with atomic_path(path) as tmp:
        onnx.save(proto, str(tmp))
        try:
            onnx.checker.check_model(str(tmp))
        except onnx.checker.ValidationError as err:
            raise EdgeclsError(f"the ONNX model for {Path(path).name} is invalid: {first_line(err)}") from None


# --------------------------------------------------------------------------- int8


def quantize_onnx_int8(float_onnx_path, out_path, calibration_images_uint8, *, per_channel: bool = True,
                       reduce_range: bool = False, quant_format: str = "qdq", activation_type: str = "uint8",
                       weight_type: str = "int8", keep_softmax_float: bool = True, progress=True) -> Path:
    """Static int8 quantization of a float ONNX classifier, calibrated on uint8 (N, H, W, 3) images.

    Defaults are the fastest settings measured (see the module docstring). ``progress``: True for
    a rich progress bar, False for none, or a callable invoked once per calibration image.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quant_pre_process, quantize_static

    if quant_format not in QUANT_FORMATS:
        raise EdgeclsError(f"unknown ONNX quantization format '{quant_format}'; choose {' or '.join(QUANT_FORMATS)}")
    for label, value in (("activation", activation_type), ("weight", weight_type)):
        if value not in QUANT_TYPES:
            raise EdgeclsError(f"unknown {label} type '{value}'; choose {' or '.join(QUANT_TYPES)}")
    proto = load_onnx(float_onnx_path)
    if integer_op_types(proto):
        raise EdgeclsError(f"{Path(float_onnx_path).name} is already quantized; quantize the float32 model")
    input_name, (height, width, channels) = onnx_image_input(proto, float_onnx_path)
    images = _calibration_array(calibration_images_uint8, (height, width, channels))
    drop_identity_reshapes(proto)  # a no-op on export_onnx's files; helps ONNX files made elsewhere
    settings = {"format": quant_format, "activations": activation_type, "weights": weight_type,
                "per_channel": bool(per_channel), "reduce_range": bool(reduce_range),
                "softmax": "float" if keep_softmax_float else "int8", "calibration": "minmax",
                "calibration_images": int(len(images))}
    qtype = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    with tempfile.TemporaryDirectory(prefix="edgecls-onnx-") as workdir:
        source = Path(workdir) / "float.onnx"
        onnx.save(proto, str(source))
        prepared = Path(workdir) / "prepared.onnx"
        try:
            # Shape inference + onnxruntime's basic graph optimisation (BN folding, constant folding);
            # sympy-based symbolic shape inference is not needed for fixed-size image models.
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
            settings["pre_processed"] = True
        except Exception:  # noqa: BLE001 - optional step; the model quantizes without it
            prepared = source
            settings["pre_processed"] = False
        excluded = [node.name for node in load_onnx(prepared).graph.node
                    if keep_softmax_float and node.op_type == "Softmax"]
        with _calibration_progress(progress, len(images)) as tick, atomic_path(out_path) as tmp:
            try:
                quantize_static(
                    str(prepared), str(tmp), _CalibrationReader(input_name, images, tick),
                    quant_format=QuantFormat.QDQ if quant_format == "qdq" else QuantFormat.QOperator,
                    per_channel=per_channel, reduce_range=reduce_range, activation_type=qtype[activation_type],
                    weight_type=qtype[weight_type], nodes_to_exclude=excluded,
                    calibrate_method=CalibrationMethod.MinMax,
                    # CalibMaxIntermediateOutputs is left unset: in onnxruntime 1.31 it discards the
                    # ranges of earlier batches instead of merging them. MinMax keeps only two
                    # numbers per tensor and image, so memory stays small anyway.
                )
            except EdgeclsError:
                raise
            except Exception as err:  # noqa: BLE001 - onnxruntime raises plain exceptions
                raise EdgeclsError(f"ONNX int8 quantization failed: {first_line(err)}") from None
            quantized = load_onnx(tmp)
            set_metadata(quantized, QUANT_METADATA_KEY, settings)
            onnx.save(quantized, str(tmp))
            try:
                onnx.checker.check_model(str(tmp))
            except onnx.checker.ValidationError as err:
                raise EdgeclsError(f"the int8 ONNX model is invalid: {first_line(err)}") from None
    return Path(out_path)


calibration_inputs = pinned_calibration_inputs  # the same pinned inputs as the TFLite path


class _CalibrationReader:
    """onnxruntime's CalibrationDataReader protocol: ``get_next()`` → feed dict, then None."""

    def __init__(self, input_name: str, images: np.ndarray, tick):
        self._batches = calibration_inputs(images)
        self._input_name = input_name
        self._tick = tick

    def get_next(self):
        batch = next(self._batches, None)
        if batch is None:
            return None
        self._tick()
        return {self._input_name: batch}

    def __iter__(self):
        return iter(self.get_next, None)


@contextlib.contextmanager
def _calibration_progress(progress, total: int):
    if callable(progress):
        yield progress
        return
    if not progress:
        yield lambda: None
        return
    from edgecls.progress import progress_bar

    with progress_bar("calibrating ONNX int8", total) as advance:
        yield advance


def _calibration_array(images, expected: tuple[int, int, int]) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or len(images) == 0:
        raise EdgeclsError("ONNX int8 quantization needs calibration images shaped (N, H, W, 3), N >= 1")
    if tuple(images.shape[1:]) != tuple(expected):
        raise EdgeclsError(f"calibration images are {tuple(images.shape[1:])}, the model takes {tuple(expected)}")
    return images

