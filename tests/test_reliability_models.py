"""Issue 6, model side: hostile datasets train, bad model files fail in one line, nothing is lost.

One tiny run is trained once for the module, from a .tar.gz that holds every kind of bad image
and every archive trick; the CLI checks then reuse it and the session's tiny deploy run.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from deploy_helpers import assert_one_error_line, cli, cli_process_args, onnx_model
from reliability_files import hostile_dataset

from edgecls.errors import EdgeclsError, ModelFileError

REPO = Path(__file__).resolve().parents[1]


# --- a run trained from a hostile archive ---

def _hostile_archive(folder: Path) -> tuple[Path, dict, dict, Path]:
    """DATA as a stranger might send it: bad images inside, and entries aiming outside."""
    legal, broken = hostile_dataset(folder / "photos", normal_per_class=8)
    outside = folder / "outside"
    outside.mkdir()
    archive = folder / "photos.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder / "photos", arcname="photos")
        for name, kind, target in [("../escaped.png", "file", ""), (f"{outside}/planted.png", "file", ""),
                                   ("photos/a/link_out", "symlink", "../../../outside/linked.png"),
                                   ("photos/b/hard_out", "hardlink", f"{outside}/hard.png")]:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = 4
                tar.addfile(info, io.BytesIO(b"evil"))
            else:
                info.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
                info.linkname = target
                tar.addfile(info)
    return archive, legal, broken, outside


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    archive, legal, broken, outside = _hostile_archive(folder)
    run = folder / "run"
    out, err = io.StringIO(), io.StringIO()
    args = ["train", archive, "--out", run, "--arch", "tiny_cnn", "--weights", "none", "--img-size", "32",
            "--epochs", "1", "--batch-size", "8", "--patience", "0"]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = _main(args)
    return {"run": run, "code": code, "out": out.getvalue(), "err": err.getvalue(), "legal": legal,
            "broken": broken, "outside": outside, "archive": archive, "args": args}


def _main(args) -> int:
    from edgecls.cli import main

    try:
        main([str(a) for a in args])
    except SystemExit as exit_info:
        return exit_info.code or 0
    return 0


def test_training_from_a_hostile_archive_uses_the_good_files_and_reports_the_rest(hostile_run):
    run, legal, broken = hostile_run["run"], hostile_run["legal"], hostile_run["broken"]
    assert hostile_run["code"] == 0, hostile_run["err"]
    assert "Traceback" not in hostile_run["out"] + hostile_run["err"]
    assert json.loads((run / "metrics.json").read_text())["epochs_run"] == 1
    scan = json.loads((run / "data_scan.json").read_text(encoding="utf-8"))
    assert sum(s["kept"] for s in scan["splits"].values()) == 2 * 8 + len(legal)
    skipped = {Path(item["path"]).as_posix().split("/photos/", 1)[1]: item["reason"] for item in scan["skipped"]}
    assert set(skipped) == set(broken)
    for name, reason in broken.items():
        assert skipped[name].startswith(reason), (name, skipped[name])
    listing = (run / "skipped_files.txt").read_text(encoding="utf-8")
    for name in broken:
        assert name.split("/", 1)[1] in listing
    for name in ("../escaped.png", "planted.png", "link_out", "hard_out"):
        assert name in listing and "not extracted from the archive" in listing
    # The console summary: counts per split, and the archive's refusals.
    per_split = re.findall(r"^\s*(train|val|test): \d+ images?, (\d+) skipped \(", hostile_run["out"], re.MULTILINE)
    assert sum(int(count) for _, count in per_split) == len(broken), hostile_run["out"]
    assert "archive: 4 entries not extracted" in hostile_run["out"]
    assert "skipped_files.txt" in hostile_run["out"]
    # Nothing landed outside the extraction folder.
    assert list(hostile_run["outside"].iterdir()) == []
    assert not (hostile_run["archive"].parent / "escaped.png").exists()


def test_a_finished_run_is_not_overwritten_without_force(hostile_run, capsys):
    run = hostile_run["run"]
    before = {name: (run / name).read_bytes() for name in ("model.keras", "metrics.json", "history.csv")}
    code, out, err = cli(hostile_run["args"], capsys)
    assert_one_error_line(code, out, err, "already holds a run")
    assert "--force" in err
    code, out, err = cli([*hostile_run["args"], "--resume"], capsys)
    assert code == 0 and "already finished" in out, err
    assert {name: (run / name).read_bytes() for name in before} == before


# --- bad model files, through every command that loads a model ---

@pytest.fixture(scope="module")
def bad_models(tmp_path_factory, hostile_run, deploy_run):
    """Model files a user may hand us by mistake, each with a sidecar so only the model is wrong."""
    from edgecls.tf import keras

    folder = tmp_path_factory.mktemp("bad_models")
    good_tflite = (deploy_run / "exports" / "int8.tflite").read_bytes()
    good_onnx = onnx_model(folder / "good.onnx").read_bytes()
    good_keras = (hostile_run["run"] / "model.keras").read_bytes()
    files = {
        "truncated.tflite": good_tflite[: len(good_tflite) // 2],
        "garbage.tflite": bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)),
        "empty.tflite": b"",
        "truncated.onnx": good_onnx[: len(good_onnx) // 2],
        "garbage.onnx": b"this is not a protobuf" * 20,
        "truncated.keras": good_keras[: len(good_keras) // 2],
        "image.keras": (hostile_run["run"] / "plots" / "history.png").read_bytes(),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
        sidecar = (deploy_run / "exports" / "int8.json") if name.endswith(".tflite") else folder / "good.json"
        if not name.endswith(".keras"):  # without its sha256, which would call it stale before the model loads
            unhashed = {k: v for k, v in json.loads(sidecar.read_text()).items() if k != "sha256"}
            (folder / name).with_suffix(".json").write_text(json.dumps(unhashed))
    with zipfile.ZipFile(folder / "broken_inside.keras", "w") as zf:
        zf.writestr("metadata.json", '{"keras_version": "2.21.0"}')
        zf.writestr("config.json", '{"class_name": "Functional", "config": {"layers": [{"oops"')
        zf.writestr("model.weights.h5", b"not hdf5")
    marker = folder / "lambda_ran"
    _lambda_model(keras, marker).save(folder / "lambda.keras")
    marker.unlink()
    shutil.copy(deploy_run / "exports" / "int8.tflite", folder / "bad_sidecar.tflite")
    (folder / "bad_sidecar.json").write_text("{ not json")
    (folder / "labels.txt").write_text("a\nb\nc\n")
    return folder


def _lambda_model(keras, marker: Path):
    # Building the model calls the lambda once (creating the marker); the test deletes it after
    # saving, so the marker reappears only if loading runs the saved bytecode.
    inputs = keras.Input((32, 32, 3))
    touched = keras.layers.Lambda(lambda x, p=str(marker): (__import__("pathlib").Path(p).touch(), x)[1])(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(touched)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(pooled))


@pytest.fixture(scope="module")
def images_and_empty_class(tmp_path_factory):
    from PIL import Image

    folder = tmp_path_factory.mktemp("imgs")
    for name in ("a", "b", "c"):
        (folder / name).mkdir()
        Image.new("RGB", (20, 20), (40 * len(name), 90, 200)).save(folder / name / "1.png")
    (folder / "empty").mkdir()
    return folder


MODEL_ERRORS = [
    ("truncated.tflite", "cannot load TFLite model"),
    ("garbage.tflite", "cannot load TFLite model"),
    ("empty.tflite", "cannot load TFLite model"),
    ("truncated.onnx", "cannot load ONNX model"),
    ("garbage.onnx", "cannot load ONNX model"),
    ("truncated.keras", "not a Keras model file"),
    ("image.keras", "not a Keras model file"),
    ("broken_inside.keras", "cannot load model"),
    ("lambda.keras", "refused"),
    ("bad_sidecar.tflite", "cannot read sidecar"),
    ("absent.tflite", "model file not found"),
]


@pytest.mark.parametrize("name, fragment", MODEL_ERRORS, ids=[m for m, _ in MODEL_ERRORS])
@pytest.mark.parametrize("command", ["predict", "bench"])
def test_a_bad_model_file_ends_predict_and_bench_in_one_line(command, name, fragment, bad_models, images_and_empty_class, capsys):
    model = bad_models / name
    if command == "predict":
        args = ["predict", model, images_and_empty_class / "a" / "1.png"]
    else:
        args = ["bench", model, "--data", images_and_empty_class, "--runs", "1", "--rounds", "1", "--warmup", "0",
                "--e2e-images", "0", "--no-progress"]
    code, out, err = cli(args, capsys)
    assert_one_error_line(code, out, err, fragment)
    assert not (bad_models / "lambda_ran").exists()


KERAS_ERRORS = [m for m in MODEL_ERRORS if m[0].endswith(".keras")] + [("truncated.tflite", "not a Keras model")]


@pytest.mark.parametrize("name, fragment", KERAS_ERRORS, ids=[m for m, _ in KERAS_ERRORS])
@pytest.mark.parametrize("command", ["evaluate", "gradcam"])
def test_a_bad_model_file_ends_evaluate_and_gradcam_in_one_line(command, name, fragment, bad_models, images_and_empty_class,
                                                               tmp_path, capsys):
    from edgecls import cli as cli_module

    if command not in {c.name or c.callback.__name__ for c in cli_module.app.registered_commands}:
        pytest.skip(f"no {command} command in this build")
    if command == "evaluate":
        args = ["evaluate", bad_models / name, "--data", images_and_empty_class]
    else:
        args = ["gradcam", bad_models / name, images_and_empty_class / "a" / "1.png", "--out", tmp_path / "cam"]
    code, out, err = cli(args, capsys)
    assert_one_error_line(code, out, err, fragment)
    assert not (bad_models / "lambda_ran").exists()


@pytest.fixture(scope="module")
def broken_run(tmp_path_factory, hostile_run):
    """A copy of the trained run whose model.keras was cut in half (a disk error, a bad copy)."""
    run = tmp_path_factory.mktemp("broken") / "run"
    shutil.copytree(hostile_run["run"], run)
    data = (run / "model.keras").read_bytes()
    (run / "model.keras").write_bytes(data[: len(data) // 2])
    return run


@pytest.mark.parametrize("case", [
    "quantize-truncated-model", "export-truncated-model", "prune-truncated-model", "quantize-lambda-model",
    "export-not-a-run", "quantize-not-a-run", "prune-not-a-run", "bundle-truncated-tflite",
    "evaluate-not-a-run", "evaluate-missing-data", "evaluate-empty-data", "bench-unknown-runtime",
    "bench-not-a-run", "predict-a-run-folder", "predict-missing-image", "predict-only-broken-image", "train-unknown-arch",
])
def test_user_mistakes_with_runs_end_in_one_line(case, broken_run, hostile_run, bad_models, images_and_empty_class, tmp_path,
                                                 deploy_run, capsys):
    run, good = broken_run, hostile_run["run"]
    tflite = deploy_run / "exports" / "int8.tflite"
    (tmp_path / "not_a_run").mkdir()
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    args, fragment = {
        "quantize-truncated-model": (["quantize", run, "--int8"], "not a Keras model file"),
        "export-truncated-model": (["export", run, "--format", "tflite"], "not a Keras model file"),
        "prune-truncated-model": (["prune", run, "--epochs", "1"], "not a Keras model file"),
        "quantize-lambda-model": (["quantize", good, "--int8", "--model", bad_models / "lambda.keras"], "refused"),
        "export-not-a-run": (["export", tmp_path / "not_a_run"], "not a run folder"),
        "quantize-not-a-run": (["quantize", tmp_path / "not_a_run", "--int8"], "not a run folder"),
        "prune-not-a-run": (["prune", tmp_path / "not_a_run"], "not a run folder"),
        "bundle-truncated-tflite": (["bundle", good, "--model", bad_models / "truncated.tflite", "--out",
                                     tmp_path / "bundle"], "cannot load TFLite model"),
        "evaluate-not-a-run": (["evaluate", tmp_path / "not_a_run"], "not a run folder"),
        "evaluate-missing-data": (["evaluate", good, "--data", tmp_path / "nowhere"], "not found"),
        "evaluate-empty-data": (["evaluate", good, "--data", images_and_empty_class / "empty"], "no class folders"),
        "bench-unknown-runtime": (["bench", tflite, "--runtime", "tensorrt", "--data", images_and_empty_class],
                                  "unknown runtime 'tensorrt'"),
        "bench-not-a-run": (["bench", tmp_path / "not_a_run", "--data", images_and_empty_class], "without model.keras"),
        "predict-a-run-folder": (["predict", good, images_and_empty_class / "a" / "1.png"], "is a folder, not a model file"),
        "predict-missing-image": (["predict", tflite, tmp_path / "nope.jpg"], "image not found"),
        "predict-only-broken-image": (["predict", tflite, tmp_path / "broken.png"], "no usable image"),
        "train-unknown-arch": (["train", images_and_empty_class, "--out", tmp_path / "r", "--arch", "vgg99"],
                               "unknown architecture 'vgg99'"),
    }[case]
    code, out, err = cli(args, capsys)
    assert_one_error_line(code, out, err, fragment)
    assert not (tmp_path / "bundle").exists()


def test_a_real_process_refuses_a_lambda_model_in_one_line_and_debug_shows_the_traceback(bad_models, images_and_empty_class):
    args = ["predict", bad_models / "lambda.keras", images_and_empty_class / "a" / "1.png"]
    plain = subprocess.run(cli_process_args(args), capture_output=True, text=True, timeout=180)
    assert_one_error_line(plain.returncode, plain.stdout, plain.stderr, "refused")
    debug = subprocess.run(cli_process_args(["--debug", *args]), capture_output=True, text=True, timeout=180)
    assert debug.returncode == 2 and "Traceback" in debug.stderr
    assert not (bad_models / "lambda_ran").exists()


# --- Keras safe mode ---

def test_a_lambda_layer_is_refused_and_its_code_never_runs(tmp_path):
    from edgecls.models.model_files import load_keras_model
    from edgecls.tf import keras

    marker = tmp_path / "lambda_ran"
    _lambda_model(keras, marker).save(tmp_path / "lambda.keras")
    marker.unlink()
    with pytest.raises(ModelFileError, match="refused") as caught:
        load_keras_model(tmp_path / "lambda.keras")
    assert "\n" not in str(caught.value) and "lambda.keras" in str(caught.value)
    assert not marker.exists()
    # The payload is live: without safe mode Keras runs it. This is what the refusal prevents.
    keras.models.load_model(tmp_path / "lambda.keras", safe_mode=False)
    assert marker.exists()


def _with_lambda_calling(source: Path, target: Path, module: str, function: str) -> None:
    """Rewrite ``source``'s Lambda layer to name ``module.function`` instead of holding bytecode."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item)
            if item.filename == "config.json":
                config = json.loads(data)
                for layer in config["config"]["layers"]:
                    if layer["class_name"] == "Lambda":
                        layer["config"].update(function={"class_name": "function", "config": function,
                                                         "module": module, "registered_name": "function"},
                                               function_type="function", module=module)
                data = json.dumps(config).encode()
            zout.writestr(item, data)


def test_a_lambda_naming_an_importable_function_is_refused_although_safe_mode_would_run_it(tmp_path):
    import reliability_files

    from edgecls.models.model_files import load_keras_model
    from edgecls.tf import keras

    inputs = keras.Input((8, 8, 3))
    hidden = keras.layers.Lambda(lambda x: x)(inputs)
    keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(hidden))).save(tmp_path / "plain.keras")
    _with_lambda_calling(tmp_path / "plain.keras", tmp_path / "named.keras", "reliability_files", "lambda_payload")
    marker = tmp_path / "payload_ran"
    reliability_files.PAYLOAD_MARKER["path"] = str(marker)
    try:
        with pytest.raises(ModelFileError, match="Lambda layer"):
            load_keras_model(tmp_path / "named.keras")
        assert not marker.exists()
        # Keras' own safe mode imports the named module and calls the function while rebuilding.
        keras.models.load_model(tmp_path / "named.keras", safe_mode=True)
        assert marker.exists()
    finally:
        reliability_files.PAYLOAD_MARKER["path"] = None


# --- writes: an export or save that fails half-way leaves the previous file as it was ---

def _no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.rglob(".tmp-*")]


def test_an_export_failing_mid_write_leaves_the_previous_export_intact(hostile_run, monkeypatch):
    from edgecls.converters import publishing as exporting
    from edgecls.converters.exports import export_run

    run = hostile_run["run"]
    export_run(run, formats=["tflite"], verbose=0)
    exports = run / "exports"
    before = {p.name: p.read_bytes() for p in exports.iterdir()}
    assert "float32.tflite" in before and "float32.json" in before

    real_write_bytes = Path.write_bytes

    def half_then_disk_full(self, data):
        real_write_bytes(self, bytes(data)[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", half_then_disk_full)
    monkeypatch.setattr(exporting, "measure_accuracy", lambda *a, **k: pytest.fail("must not get this far"))
    with pytest.raises(EdgeclsError, match="no space left"):
        export_run(run, formats=["tflite"], verbose=0)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in exports.iterdir()} == before
    assert _no_temp_files(run)


def test_an_onnx_export_failing_mid_write_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    import onnx

    from edgecls.converters import onnx_export
    from edgecls.models.modeling import build_model

    model = build_model("tiny_cnn", 32, 3, weights="none")
    target = onnx_export.export_onnx(model, tmp_path / "model.onnx")
    before = target.read_bytes()
    real_save = onnx.save

    def save_half_then_fail(proto, path, *args, **kwargs):
        real_save(proto, path, *args, **kwargs)
        data = Path(path).read_bytes()
        Path(path).write_bytes(data[: len(data) // 3])
        raise RuntimeError("converter crashed while writing")

    monkeypatch.setattr(onnx_export.onnx, "save", save_half_then_fail)
    with pytest.raises(RuntimeError, match="crashed"):
        onnx_export.export_onnx(model, target)
    assert target.read_bytes() == before
    assert _no_temp_files(tmp_path)


def test_a_model_save_failing_mid_write_leaves_the_previous_model_intact(hostile_run, tmp_path, monkeypatch):
    from edgecls.models.model_files import load_keras_model
    from edgecls.training.callbacks import save_model

    target = tmp_path / "model.keras"
    shutil.copy(hostile_run["run"] / "model.keras", target)
    before = target.read_bytes()
    model = load_keras_model(target)

    def save_half_then_die(path, *args, **kwargs):
        Path(path).write_bytes(before[: len(before) // 2])
        raise KeyboardInterrupt  # Ctrl-C in the middle of the write

    monkeypatch.setattr(model, "save", save_half_then_die)
    with pytest.raises(KeyboardInterrupt):
        save_model(model, target)
    assert target.read_bytes() == before
    assert _no_temp_files(tmp_path)


# --- the deploy runtime refuses models that are not image classifiers ---

def test_a_model_that_is_not_an_image_classifier_is_a_model_file_error(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from edgecls.deploy.runtimes import open_model

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "text",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 128])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 128])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "text.onnx"))
    with pytest.raises(ModelFileError, match="image"):
        open_model(tmp_path / "text.onnx", quiet=True)


# --- soak: memory stays flat over 10,000 predictions ---

@pytest.mark.slow
@pytest.mark.parametrize("kind", ["int8.tflite", "onnx"])
def test_ten_thousand_predictions_keep_resident_memory_flat(kind, deploy_run, tmp_path):
    model = (deploy_run / "exports" / "int8.tflite" if kind == "int8.tflite"
             else onnx_model(tmp_path / "model.onnx"))
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "soak.py"), "--measure", str(model),
                           "--predictions", "10000", "--warmup", "500"], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["predictions"] == 10_000 and not result["tensorflow_imported"]
    assert result["growth_pct"] < 5.0, result
