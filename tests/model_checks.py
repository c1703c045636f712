"""The shared model checks: one registered architecture, walked through everything a model must survive.

``check_model(name, folder)`` builds the model as its registry entry says (``test_size``,
``test_kwargs``) and checks, in order: build (flat graph, shapes) → train step → save, then load
in a fresh process → int8 TFLite, integer from input to logits in one XNNPACK partition → QAT
wrapping, then its conversion to a pure int8 graph → ONNX export with Keras parity → sidecars the deploy runtime reads → a Grad-CAM
target layer. A new architecture registered with ``@register_model`` is covered without a new test.

Loading in a fresh process costs a Python + TensorFlow start-up, so callers checking many models
pass ``load_later`` and load the saved files together with :func:`load_in_fresh_process`.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

NUM_CLASSES = 3
LABELS = ("red", "green", "blue")
BATCH = 8


@dataclasses.dataclass
class Built:
    name: str
    size: int
    model: object
    images: np.ndarray  # uint8, (BATCH, size, size, 3)
    probs: np.ndarray  # the model's probabilities on ``images`` after the train step
    keras_path: Path | None = None


def images_for(size: int, count: int = BATCH, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, size, size, 3)).astype(np.uint8)


def check_build(name: str) -> Built:
    from edgecls.models import get_model_spec
    from edgecls.models.modeling import build_model
    from edgecls.tf import keras

    spec = get_model_spec(name)
    size = spec.test_size
    keras.utils.set_random_seed(0)
    model = build_model(name, size, NUM_CLASSES, weights="none", **spec.test_kwargs)
    if spec.data_init is not None:
        spec.data_init(model, images_for(size, count=32, seed=1))  # as training does before its first step
    assert model.input_shape == (None, size, size, 3), model.input_shape
    assert model.output_shape == (None, NUM_CLASSES), model.output_shape
    assert not any(isinstance(layer, keras.Model) for layer in model.layers), "graphs must be flat for tfmot"
    return Built(name, size, model, images_for(size), np.zeros(0))


def check_train_step(built: Built, steps: int = 3) -> None:
    """A few eager steps: the weights move, the loss is finite, the BatchNorm statistics see data.

    Eager, because tracing a graph per architecture would cost minutes. The steps also move the
    BatchNorm moving statistics off their initial values, as any real training does: XNNPACK's
    int8 ADD refuses scale ratios that only untouched random-init networks produce.
    """
    from edgecls.tf import keras, tf

    model = built.model
    x = tf.constant(built.images.astype("float32"))
    y = tf.constant(keras.utils.to_categorical(np.arange(BATCH) % NUM_CLASSES, NUM_CLASSES))
    optimizer = keras.optimizers.Adam(1e-3)
    before = [w.copy() for w in model.get_weights()]
    for _ in range(steps):
        with tf.GradientTape() as tape:
            loss = keras.losses.categorical_crossentropy(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        assert all(g is not None for g in grads), "a trainable weight gets no gradient"
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        assert np.all(np.isfinite(loss.numpy())), loss
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights())), "the weights did not move"
    built.probs = model(x, training=False).numpy()
    np.testing.assert_allclose(built.probs.sum(axis=1), 1.0, rtol=1e-4)


def check_save(built: Built, folder: Path) -> Path:
    """Saved as training saves it (weights and graph, no optimizer) and loaded back in this process."""
    from edgecls.models.model_files import load_keras_model
    from edgecls.training.callbacks import save_inference_model

    path = Path(folder) / f"{built.name}.keras"
    save_inference_model(built.model, path)
    again = load_keras_model(path)
    np.testing.assert_allclose(again(built.images.astype("float32"), training=False).numpy(), built.probs, atol=1e-5)
    built.keras_path = path
    return path


_FRESH_LOADER = """
import json, sys
import numpy as np
from edgecls.models.model_files import load_keras_model
out = {}
for path, images in json.loads(sys.argv[1]).items():
    model = load_keras_model(path)
    out[path] = model(np.load(images).astype("float32"), training=False).numpy().tolist()
# A user's `edgecls quantize` imports only what loading needs: a custom layer that only the
# builders register would fail here, and nowhere in a test process that imported everything.
assert "edgecls.models.architectures" not in sys.modules, "loading needed the builders"
print(json.dumps(out))
"""


def load_in_fresh_process(built_models: list[Built]) -> None:
    """Load every saved model in one new Python process and compare its outputs with this one's."""
    jobs = {}
    for built in built_models:
        assert built.keras_path is not None, f"{built.name} was not saved"
        images = built.keras_path.with_suffix(".images.npy")
        np.save(images, built.images)
        jobs[str(built.keras_path)] = str(images)
    done = subprocess.run([sys.executable, "-c", _FRESH_LOADER, json.dumps(jobs)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    outputs = json.loads(done.stdout.strip().splitlines()[-1])
    for built in built_models:
        np.testing.assert_allclose(np.array(outputs[str(built.keras_path)]), built.probs, atol=1e-5,
                                   err_msg=f"{built.name} loaded in a fresh process computes something else")


def assert_integer_graph(info: dict) -> None:
    assert info["float_ops"] == [], f"float islands: {info['float_ops']}"
    # At each end a DEQUANTIZE + QUANTIZE pair (uint8 <-> int8 through float, which XNNPACK runs).
    assert info["boundary_quantize_ops"] <= 4, info["ops"]
    assert info["input"]["dtype"] == "uint8" and info["input"]["scale"] == 1.0 and info["input"]["zero_point"] == 0, \
        info["input"]
    assert info["output"]["dtype"] == "uint8", info["output"]
    # All of it is one XNNPACK partition.
    assert info["xnnpack_partitions"] == 1, f"{info['xnnpack_partitions']} XNNPACK partitions; the graph is split"


def check_int8_tflite(built: Built, folder: Path) -> tuple[Path, dict]:
    """Post-training int8: raw uint8 pixels in, uint8 logits out, nothing float between."""
    from edgecls.converters import tflite_convert
    from edgecls.converters.tflite_inspect import inspect_tflite

    blob = tflite_convert.convert(built.model, "int8", calibration=images_for(built.size, 16, seed=1))
    info = inspect_tflite(blob)
    assert_integer_graph(info)
    path = Path(folder) / f"{built.name}_int8.tflite"
    path.write_bytes(blob)
    return path, info


def check_qat(built: Built):
    """tfmot wraps every layer for quantization-aware training, and the fake-quant ops learn ranges.

    On the graph QAT trains in edgecls: the model's speed-rewritten equivalent, as PTQ converts it.
    """
    from edgecls.compression.qat import quantize_aware_model
    from edgecls.converters import tflite_convert

    qat = quantize_aware_model(tflite_convert.int8_graph(built.model))
    # Training-mode calls let every fake-quant op learn a range (eager: no graph tracing to wait for).
    for seed in range(2):
        qat(images_for(built.size, BATCH, seed=seed).astype("float32"), training=True)
    return qat


def check_qat_tflite(qat) -> None:
    """The quantization-aware model converts to a pure int8 graph."""
    from edgecls.converters import tflite_convert
    from edgecls.converters.tflite_inspect import inspect_tflite

    assert_integer_graph(inspect_tflite(tflite_convert.convert_qat(qat)))


def check_onnx(built: Built, folder: Path) -> tuple[Path, None]:
    """Float ONNX: checked by onnx, named input/output, dynamic batch, the same answers as Keras."""
    import onnx

    from edgecls.converters import onnx_export

    path = onnx_export.export_onnx(built.model, Path(folder) / f"{built.name}.onnx")
    onnx.checker.check_model(str(path))
    proto = onnx.load(str(path))
    assert [i.name for i in proto.graph.input] == ["image"] and [o.name for o in proto.graph.output] == ["probs"]
    assert not onnx_export.integer_op_types(proto)
    # tf2onnx's transpose pass must have run (it crashes on MobileNetV3's hard-swish without our fix),
    # and identity Reshapes (squeeze-excite's) are gone.
    ops = [node.op_type for node in proto.graph.node]
    assert ops.count("Transpose") <= 2 and "Reshape" not in ops, {op: ops.count(op) for op in set(ops)}
    parity = onnx_export.check_parity(built.model, path, built.images)
    assert parity["ok"], parity
    return path, None


def check_tflite_sidecar(built: Built, path: Path, info: dict) -> None:
    """The int8 file's sidecar, built from its graph as an export writes it; the deploy runtime feeds the model by it."""
    from edgecls.publish import write_sidecar
    from edgecls.sidecar import build_sidecar

    write_sidecar(path, build_sidecar(
        model_file=path, fmt="tflite", variant="int8", labels=LABELS, architecture=built.name, img_size=built.size,
        input_dtype=info["input"]["dtype"], input_quant=(info["input"]["scale"], info["input"]["zero_point"]),
        output_kind="probabilities" if info["ops"].get("SOFTMAX") else "logits", output_dtype=info["output"]["dtype"],
        output_quant=(info["output"]["scale"], info["output"]["zero_point"])))
    sidecar = _read_back(built, path)
    check_standard_metadata(path)
    assert sidecar["output"]["kind"] == "logits", "an int8 model ends at the logits"
    assert sidecar["input"]["dtype"] == "uint8" and sidecar["input"]["scale"] == 1.0, sidecar["input"]


def check_standard_metadata(path: Path) -> dict:
    """A .tflite as edgecls writes it: the standard TFLite metadata (M001) in the flatbuffer, named after the
    run, and labels.txt in the appended zip stored uncompressed (MediaPipe refuses deflated entries);
    returns the embedded sidecar. MediaPipe itself reads such files in tests/test_mediapipe_client.py."""
    import zipfile

    from edgecls.converters.tflite_metadata import read_metadata_buffer
    from edgecls.model_metadata import ZIP_LABELS, strip_tflite, tflite_sidecar

    buffer = read_metadata_buffer(strip_tflite(Path(path).read_bytes()))
    assert buffer is not None and buffer[4:8] == b"M001", f"{path} has no standard TFLite metadata"
    sidecar = tflite_sidecar(path)
    info = sidecar["tflite"]["standard_metadata"]
    assert info["name"].encode() in buffer and info["description"].encode() in buffer
    with zipfile.ZipFile(path) as zipped:
        assert zipped.getinfo(ZIP_LABELS).compress_type == zipfile.ZIP_STORED
        assert zipped.read(ZIP_LABELS).decode().splitlines() == sidecar["labels"]
    return sidecar


def check_onnx_sidecar(built: Built, path: Path, info: None = None) -> None:
    """The ONNX sidecar, from the file's own graph, beside the file and embedded in it."""
    from edgecls.converters import onnx_export
    from edgecls.deploy.runtimes import open_model
    from edgecls.publish import write_sidecar
    from edgecls.sidecar import build_sidecar

    fields = onnx_export.onnx_sidecar_fields(path)
    assert fields["img_size"] == built.size and fields["batch"] is None, fields
    write_sidecar(path, build_sidecar(model_file=path, labels=LABELS, architecture=built.name, **fields))
    _read_back(built, path)
    np.testing.assert_allclose(open_model(path, quiet=True).predict(built.images), built.probs, atol=1e-3)


def _read_back(built: Built, path: Path) -> dict:
    from edgecls import formats
    from edgecls.deploy.runtimes import open_model
    from edgecls.sidecar import read_sidecar

    sidecar = read_sidecar(path)
    assert sidecar["architecture"] == built.name and sidecar["input"]["shape"][1:] == [built.size, built.size, 3]
    fmt = formats.for_path(path)
    if fmt.embeds_sidecar:  # the copy inside the file is the one beside it
        embedded = formats.load(fmt.read_embedded)(path)
        assert {k: embedded[k] for k in ("labels", "architecture", "input")} == {
            k: sidecar[k] for k in ("labels", "architecture", "input")}
    runtime = open_model(path, quiet=True)
    assert runtime.labels == list(LABELS) and runtime.input_size == (built.size, built.size)
    probs = runtime.predict(built.images)
    assert probs.shape == (BATCH, NUM_CLASSES)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-4)  # int8 logits come back as probabilities
    return sidecar


def check_gradcam(built: Built) -> None:
    """Grad-CAM explains on the last convolution's feature map, with finite maps in [0, 1]."""
    from edgecls.insight.grad_cam import GradCam, find_target_layer
    from edgecls.tf import keras

    model = built.model
    target = find_target_layer(model)
    order = [layer.name for layer in model.layers]
    convs = [i for i, layer in enumerate(model.layers)
             if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D))]
    # A convolution upstream, none downstream, and it feeds the head.
    assert convs and convs[-1] <= order.index(target.name) < order.index("head_pool"), target.name
    heatmaps = GradCam(model)(built.images[:2]).heatmaps
    assert heatmaps.shape == (2, *target.output_shape[1:3])
    assert np.isfinite(heatmaps).all() and heatmaps.min() >= 0 and heatmaps.max() <= 1


@dataclasses.dataclass(frozen=True)
class FormatChecks:
    check: str  # its name in CHECKS (and in a registry entry's test_slow_checks)
    convert: object  # (built, folder) -> (path, info): the model converted to the format, checked
    sidecar: object  # (built, path, info) -> None: its sidecar written as an export does, read back, run


# One entry per format of edgecls.formats that an export writes and a runtime runs.
FORMAT_CHECKS = {
    "tflite": FormatChecks("int8", check_int8_tflite, check_tflite_sidecar),
    "onnx": FormatChecks("onnx", check_onnx, check_onnx_sidecar),
}


def format_checks() -> list[FormatChecks]:
    """The checks of every format in the table, in its order; a format without checks is a failure."""
    from edgecls import formats

    names = [fmt.name for fmt in formats.FORMATS.values() if fmt.exported_in_run]
    missing = [name for name in names if name not in FORMAT_CHECKS]
    assert not missing, f"formats {missing} are in edgecls.formats but have no FORMAT_CHECKS entry here"
    return [FORMAT_CHECKS[name] for name in names]


# After build, train step and save, which always run: one check per format (from the table), "qat"
# wraps the model for QAT, "qat_tflite" (which wraps it too) converts the result to TFLite.
CHECKS = (*(c.check for c in format_checks()), "qat", "qat_tflite", "sidecar", "gradcam")


def check_model(name: str, folder: Path, *, checks=CHECKS, load_later: dict | None = None) -> Built:
    """Every check in ``checks``, in order, for the registered architecture ``name``; files go to ``folder``.

    ``sidecar`` checks the sidecar of each file the other checks exported. ``load_later``: instead
    of starting a process to load the saved model, put it (without the in-memory model) in this
    dict under ``name``, for one :func:`load_in_fresh_process` of many.
    """
    unknown = set(checks) - set(CHECKS)
    assert not unknown, f"unknown checks {unknown}; choose from {CHECKS}"
    folder = Path(folder)
    built = check_build(name)
    check_train_step(built)
    check_save(built, folder)
    if load_later is None:
        load_in_fresh_process([built])
    else:
        load_later[name] = dataclasses.replace(built, model=None)
    for fmt in format_checks():
        if fmt.check in checks:
            path, info = fmt.convert(built, folder)
            if "sidecar" in checks:
                fmt.sidecar(built, path, info)
    if "qat" in checks or "qat_tflite" in checks:
        qat = check_qat(built)
        if "qat_tflite" in checks:
            check_qat_tflite(qat)
    if "gradcam" in checks:
        check_gradcam(built)
    return built
