"""A model file carries its sidecar: a lone .tflite / .onnx still predicts with its class names.

The exports come from the real writers (``export_run``: float32 + int8 TFLite, ONNX float32), are
copied alone into an empty folder and read back by edgecls' runtimes (``edgecls predict``) and by
pi_infer.py where TensorFlow and edgecls cannot be imported. The TFLite block is a zip appended
to the flatbuffer (edgecls.model_metadata), and the flatbuffer carries the standard TFLite metadata
(edgecls.converters.tflite_metadata; MediaPipe reads it in tests/test_mediapipe_client.py): the
bare interpreter must give the converter's own outputs all the same.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import onnx
import pytest
from deploy_helpers import NO_TF_RUNNER, PI_INFER, assert_one_error_line, cli, tflite_runtime_214_python
from PIL import Image

from edgecls.converters.tflite_metadata import METADATA_BUFFER_NAME, embed_tflite_file, read_metadata_buffer
from edgecls.deploy.prediction import predict_files
from edgecls.deploy.runtimes import open_model
from edgecls.errors import ModelFileError
from edgecls.model_metadata import FILE_FIELDS, ONNX_KEY, ZIP_LABELS, ZIP_SIDECAR, embed_tflite, strip_tflite, tflite_sidecar
from edgecls.sidecar import read_model_sidecar

CLASSES = ("apple", "banana", "cherry")
SIZE = 32
EXPORTS = ("float32.tflite", "int8.tflite", "onnx_float32.onnx")


@pytest.fixture(scope="module")
def exported_files(tmp_path_factory):
    """A trained tiny_cnn run exported by ``export_run``: {file name: path in RUN/exports}."""
    from edgecls.config import RunConfig
    from edgecls.converters.exports import export_run
    from edgecls.training.trainer import train

    root = tmp_path_factory.mktemp("metadata")
    rng = np.random.default_rng(0)
    for name, colour in zip(CLASSES, [(220, 40, 40), (230, 220, 40), (120, 20, 60)]):
        folder = root / "data" / name
        folder.mkdir(parents=True)
        for i in range(16):
            pixels = np.clip(np.array(colour) + rng.integers(-30, 31, (24, 24, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
    config = RunConfig()
    config.data.path, config.data.img_size = str(root / "data"), SIZE
    config.model.arch, config.model.weights = "tiny_cnn", "none"
    config.train.epochs, config.train.batch_size, config.train.early_stopping_patience = 2, 8, 0
    train(config, root / "run", verbose=0)
    export_run(root / "run", formats=("tflite", "onnx"), int8=True, calibration=16, verbose=0)
    return {name: root / "run" / "exports" / name for name in EXPORTS}


@pytest.fixture
def two_class_images(make_images, tmp_path):
    return make_images(tmp_path / "imgs", classes=("x", "y"), per_class=2)


def _lone(source, folder):
    """``source`` copied alone into an empty ``folder`` (no sidecar JSON, no labels.txt)."""
    folder.mkdir(parents=True, exist_ok=True)
    assert not any(folder.iterdir())
    target = folder / source.name
    shutil.copyfile(source, target)
    return target


def _pi_infer(*args):
    return subprocess.run([sys.executable, "-c", NO_TF_RUNNER, str(PI_INFER), *map(str, args)],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name", EXPORTS)
def test_a_lone_export_predicts_with_its_class_names(name, exported_files, two_class_images, tmp_path, capsys):
    beside_json = predict_files([exported_files[name]], [two_class_images], top_k=3)[0].records
    lone = _lone(exported_files[name], tmp_path / "empty")
    code, out, err = cli(["predict", lone, two_class_images, "--json", "--top-k", "3"], capsys)
    assert code == 0, err
    assert "note:" not in err  # nothing assumed: the labels and preprocessing came from the file
    records = json.loads(out)
    assert {t["label"] for r in records for t in r["top_k"]} == set(CLASSES)
    assert [r["top_k"] for r in records] == [r["top_k"] for r in beside_json]  # same preprocessing, same answers
    runtime = open_model(lone, quiet=True)
    assert runtime.sidecar_source == "embedded" and runtime.labels == list(CLASSES)
    assert runtime.output_kind == json.loads(exported_files[name].with_suffix(".json").read_text())["output"]["kind"]


@pytest.mark.parametrize("name", ["float32.tflite", "int8.tflite"])
def test_pi_infer_reads_a_lone_tflite_without_tensorflow(name, exported_files, two_class_images, tmp_path):
    lone = _lone(exported_files[name], tmp_path / "device")
    result = _pi_infer(lone, two_class_images, "--json", "--top-k", "3")
    assert result.returncode == 0, result.stderr
    assert "blocked" not in result.stderr and "note:" not in result.stderr
    device = json.loads(result.stdout)
    host = predict_files([exported_files[name]], [two_class_images], top_k=3)[0].records
    assert [r["top_k"][0]["label"] for r in device] == [r["top_k"][0]["label"] for r in host]
    assert device == host
    assert {t["label"] for r in device for t in r["top_k"]} == set(CLASSES)


def test_the_embedded_block_is_the_sidecar_and_labels_after_the_flatbuffer_with_standard_metadata(exported_files, tmp_path):
    for name in ("float32.tflite", "int8.tflite"):
        path = exported_files[name]
        data = path.read_bytes()
        with zipfile.ZipFile(path) as zipped:
            assert sorted(zipped.namelist()) == sorted([ZIP_SIDECAR, ZIP_LABELS])
            # MediaPipe hands out associated files as views into the model: stored, never deflated.
            assert {info.compress_type for info in zipped.infolist()} == {zipfile.ZIP_STORED}
            assert zipped.read(ZIP_LABELS).decode().splitlines() == list(CLASSES)
            embedded = json.loads(zipped.read(ZIP_SIDECAR))
        beside = json.loads(path.with_suffix(".json").read_text())
        assert embedded == {k: v for k, v in beside.items() if k not in FILE_FIELDS}
        assert beside["size"]["bytes"] == len(data)  # the JSON states the size and hash of the file as written
        assert beside["sha256"] == hashlib.sha256(data).hexdigest()
        flatbuffer = strip_tflite(data)
        assert data.startswith(flatbuffer) and len(flatbuffer) < len(data) and flatbuffer[4:8] == b"TFL3"
        assert tflite_sidecar(path) == embedded
        assert read_metadata_buffer(flatbuffer)[4:8] == b"M001"  # the standard metadata, in the flatbuffer
        assert embedded["tflite"]["standard_metadata"]["name"] == "run"  # the run folder's name
        # Embedding again replaces the block and the metadata (never stacks) and is deterministic.
        assert embed_tflite(data, beside) == data
        assert strip_tflite(flatbuffer) == flatbuffer
        again = tmp_path / name
        again.write_bytes(data)
        embed_tflite_file(again, beside)
        assert again.read_bytes() == data
        assert _converter_flatbuffer(flatbuffer) != flatbuffer and read_metadata_buffer(_converter_flatbuffer(flatbuffer)) is None
    onnx_path = exported_files["onnx_float32.onnx"]
    props = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    assert json.loads(props[ONNX_KEY])["labels"] == list(CLASSES)


def _converter_flatbuffer(flatbuffer: bytes) -> bytes:
    """``flatbuffer`` without its standard metadata buffer: the bytes the converter wrote."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(flatbuffer), 0)
    (entry,) = [m for m in model.metadata if m.name.decode() == METADATA_BUFFER_NAME]
    assert entry.buffer == len(model.buffers) - 1  # appended last, so removing it renumbers nothing
    model.metadata.remove(entry)
    model.buffers.pop()
    builder = flatbuffers.Builder(len(flatbuffer))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@pytest.mark.parametrize("xnnpack", [True, False], ids=["xnnpack", "reference-kernels"])
@pytest.mark.parametrize("name", ["float32.tflite", "int8.tflite"])
def test_a_bare_interpreter_loads_the_file_and_gives_identical_outputs(name, xnnpack, exported_files, tmp_path):
    """The published file (standard metadata, zip) against the converter's flatbuffer alone."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    with_block = exported_files[name]
    without = tmp_path / f"plain_{name}"
    without.write_bytes(_converter_flatbuffer(strip_tflite(with_block.read_bytes())))
    resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    outputs = []
    for source in (without, with_block):
        for kwargs in ({"model_path": str(source)}, {"model_content": source.read_bytes()}):
            interpreter = Interpreter(num_threads=2, experimental_op_resolver_type=resolver, **kwargs)
            interpreter.allocate_tensors()
            detail = interpreter.get_input_details()[0]
            batch = np.random.default_rng(5).integers(0, 256, detail["shape"]).astype(detail["dtype"])
            interpreter.set_tensor(detail["index"], batch)
            interpreter.invoke()
            outputs.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).copy())
    assert all(np.array_equal(outputs[0], other) for other in outputs[1:])


def test_a_sidecar_json_beside_the_file_wins(exported_files, two_class_images, tmp_path, capsys):
    lone = _lone(exported_files["int8.tflite"], tmp_path / "edited")
    sidecar = json.loads(exported_files["int8.tflite"].with_suffix(".json").read_text())
    sidecar["labels"] = ["red", "yellow", "purple"]
    lone.with_suffix(".json").write_text(json.dumps(sidecar))
    assert read_model_sidecar(lone)[1] == "json" and open_model(lone, quiet=True).sidecar_source == "json"
    code, out, err = cli(["predict", lone, two_class_images, "--json", "--top-k", "1"], capsys)
    assert code == 0, err
    assert {r["top_k"][0]["label"] for r in json.loads(out)} <= {"red", "yellow", "purple"}
    result = _pi_infer(lone, two_class_images, "--json", "--top-k", "1")
    assert result.returncode == 0, result.stderr
    assert {r["top_k"][0]["label"] for r in json.loads(result.stdout)} <= {"red", "yellow", "purple"}

    onnx_lone = _lone(exported_files["onnx_float32.onnx"], tmp_path / "edited_onnx")
    onnx_sidecar = json.loads(exported_files["onnx_float32.onnx"].with_suffix(".json").read_text())
    onnx_lone.with_suffix(".json").write_text(json.dumps(dict(onnx_sidecar, labels=["r", "y", "p"])))
    assert open_model(onnx_lone, quiet=True).labels == ["r", "y", "p"]


def _damaged_tflite(source, target, how):
    data = bytearray(source.read_bytes())
    start = len(strip_tflite(bytes(data)))
    if how == "corrupt":
        data[start + 60] ^= 0xFF  # inside the deflated sidecar: its CRC no longer matches
    elif how == "truncated":
        del data[-30:]  # the zip's end record is gone, its entries are still there
    elif how == "not-a-sidecar":
        data = bytearray(embed_tflite(bytes(data), {"labels": list(CLASSES)}))  # no "input"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(bytes(data))
    return target


@pytest.mark.parametrize("how", ["corrupt", "truncated", "not-a-sidecar"])
def test_a_damaged_embedded_block_is_one_line_naming_what_is_missing(how, exported_files, two_class_images, tmp_path, capsys):
    model = _damaged_tflite(exported_files["int8.tflite"], tmp_path / "bad" / "int8.tflite", how)
    with pytest.raises(ModelFileError):
        read_model_sidecar(model)
    code, out, err = cli(["predict", model, two_class_images], capsys)
    assert_one_error_line(code, out, err, "embedded sidecar")
    assert "int8.json beside it" in err
    result = _pi_infer(model, two_class_images)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "embedded sidecar" in lines[0] and "int8.json" in lines[0] and "Traceback" not in result.stderr


def test_a_damaged_onnx_sidecar_is_one_line(exported_files, two_class_images, tmp_path, capsys):
    proto = onnx.load(str(exported_files["onnx_float32.onnx"]))
    next(p for p in proto.metadata_props if p.key == ONNX_KEY).value = "{cut short"
    model = tmp_path / "bad" / "model.onnx"
    model.parent.mkdir()
    onnx.save(proto, str(model))
    code, out, err = cli(["predict", model, two_class_images], capsys)
    assert_one_error_line(code, out, err, "unreadable embedded sidecar")


def test_without_any_sidecar_the_assumptions_are_said(exported_files, two_class_images, tmp_path, capsys, pi_infer):
    model = tmp_path / "plain" / "int8.tflite"
    model.parent.mkdir()
    model.write_bytes(strip_tflite(exported_files["int8.tflite"].read_bytes()))
    assert read_model_sidecar(model) == (None, None)
    code, out, err = cli(["predict", model, two_class_images, "--json", "--top-k", "1"], capsys)
    assert code == 0 and err.startswith("note: no sidecar for int8.tflite") and "none embedded" in err
    assert pi_infer.read_sidecar(str(model)) is None
    result = _pi_infer(model, two_class_images, "--top-k", "1")
    assert result.returncode == 0 and "none embedded" in result.stderr, result.stderr


@pytest.mark.slow
def test_tflite_runtime_2_14_reads_a_lone_tflite(exported_files, two_class_images, tmp_path):
    """The Pi's stack (tflite-runtime 2.14, numpy<2) loads the file with its block and reads the labels."""
    python = tflite_runtime_214_python(tmp_path)
    lone = _lone(exported_files["int8.tflite"], tmp_path / "pi")
    result = subprocess.run([str(python), str(PI_INFER), str(lone), str(two_class_images), "--json", "--top-k", "3"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    device = json.loads(result.stdout)
    host = predict_files([exported_files["int8.tflite"]], [two_class_images], top_k=3)[0].records
    assert [r["top_k"][0]["label"] for r in device] == [r["top_k"][0]["label"] for r in host]
    assert {t["label"] for r in device for t in r["top_k"]} == set(CLASSES)
