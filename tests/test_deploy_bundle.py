"""edgecls bundle: the folder for the Pi, written whole or not at all."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from deploy_helpers import LABELS, NO_TF_RUNNER, PI_INFER, assert_one_error_line, cli
from model_checks import check_standard_metadata

from edgecls.deploy.bundling import bundle
from edgecls.deploy.prediction import predict_files

CONTENTS = {"int8.tflite", "int8.json", "labels.txt", "pi_infer.py", "requirements-pi.txt", "README.md"}


def test_bundle_contents_and_it_runs_without_tensorflow(deploy_run, tmp_path, make_images, capsys):
    out = tmp_path / "pi-bundle"
    code, stdout, err = cli(["bundle", deploy_run, "--target", "pi", "--out", out], capsys)
    assert code == 0, err
    assert {p.name for p in out.iterdir()} == CONTENTS
    assert (out / "labels.txt").read_text().split() == list(LABELS)
    assert (out / "pi_infer.py").read_bytes() == PI_INFER.read_bytes()
    assert (out / "int8.tflite").read_bytes() == (deploy_run / "exports" / "int8.tflite").read_bytes()
    check_standard_metadata(out / "int8.tflite")  # the bundle's copy runs in MediaPipe too
    assert json.loads((out / "int8.json").read_text())["labels"] == list(LABELS)
    requirements = (out / "requirements-pi.txt").read_text()
    assert 'tflite-runtime==2.14.0 ; python_version < "3.12"' in requirements
    assert 'numpy>=1.23,<2 ; python_version < "3.12"' in requirements and "ai-edge-litert" in requirements
    readme = (out / "README.md").read_text()
    assert "python3 pi_infer.py int8.tflite" in readme and "pip install -r requirements-pi.txt" in readme
    assert "Bookworm" in readme and "--bench" in readme and "edgecls bench" in readme
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]

    data = make_images(tmp_path / "imgs", per_class=2)
    result = subprocess.run([sys.executable, "-c", NO_TF_RUNNER, str(out / "pi_infer.py"), str(out / "int8.tflite"),
                             str(data), "--json", "--top-k", "1"], capture_output=True, text=True, timeout=120,
                            cwd=out)
    assert result.returncode == 0, result.stderr
    host = predict_files([deploy_run / "exports" / "int8.tflite"], [data], top_k=1)[0].records
    assert [r["top_k"][0]["label"] for r in json.loads(result.stdout)] == [r["top_k"][0]["label"] for r in host]


def test_refuses_a_non_empty_out_without_force(deploy_run, tmp_path, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, stdout, err = cli(["bundle", deploy_run, "--out", out], capsys)
    assert_one_error_line(code, stdout, err, "is not empty; use --force")
    assert (out / "keep.txt").read_text() == "mine"
    code, stdout, err = cli(["bundle", deploy_run, "--out", out, "--force"], capsys)
    assert code == 0, err
    assert {p.name for p in out.iterdir()} == CONTENTS
    assert not [p for p in tmp_path.iterdir() if p.name.startswith((".tmp-", ".old-"))]


def test_an_empty_out_folder_is_fine_and_model_can_be_chosen(deploy_run, tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    bundle(deploy_run, out=out, model=deploy_run / "exports" / "float32.tflite")
    assert {p.name for p in out.iterdir()} == CONTENTS - {"int8.tflite", "int8.json"} | {"float32.tflite",
                                                                                            "float32.json"}


def test_missing_int8_export_names_the_command(deploy_run, tmp_path, capsys):
    bare_run = tmp_path / "bare_run"
    bare_run.mkdir()
    shutil.copy(deploy_run / "model.keras", bare_run / "model.keras")
    code, stdout, err = cli(["bundle", bare_run, "--out", tmp_path / "b"], capsys)
    assert_one_error_line(code, stdout, err, f"make it with `edgecls quantize {bare_run} --int8`")
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("case, fragment", [
    ("keras_model", "runs TFLite models"),
    ("missing_model", "model file not found"),
    ("no_sidecar", "has no sidecar"),
    ("missing_run", "run folder not found"),
    ("bad_target", "unknown target 'esp32'"),
])
def test_bundle_errors_are_one_line(case, fragment, deploy_run, tmp_path, capsys):
    args = ["bundle", deploy_run, "--out", tmp_path / "out"]
    if case == "keras_model":
        args += ["--model", deploy_run / "model.keras"]
    elif case == "missing_model":
        args += ["--model", tmp_path / "nope.tflite"]
    elif case == "no_sidecar":
        shutil.copy(deploy_run / "exports" / "int8.tflite", tmp_path / "lonely.tflite")
        args += ["--model", tmp_path / "lonely.tflite"]
    elif case == "missing_run":
        args[1] = tmp_path / "no_run"
    elif case == "bad_target":
        args += ["--target", "esp32"]
    code, stdout, err = cli(args, capsys)
    assert_one_error_line(code, stdout, err, fragment)


def test_the_readme_states_the_accuracy_measured_at_export(tmp_path, make_images, capsys):
    # A real run and a real `edgecls quantize`: the README must read what the exporter writes.
    import edgecls

    data = make_images(tmp_path / "data", per_class=10)
    run = tmp_path / "run"
    edgecls.train(data, run, arch="tiny_cnn", weights="none", img_size=32, epochs=1, batch_size=8, patience=0,
                  tensorboard=False, verbose=0)
    edgecls.quantize(run, int8=True, calibration=16, verbose=0)
    accuracy = json.loads((run / "exports" / "int8.json").read_text())["accuracy"]
    code, _, err = cli(["bundle", run, "--out", tmp_path / "b"], capsys)
    assert code == 0, err
    readme = (tmp_path / "b" / "README.md").read_text()
    line = next(line for line in readme.splitlines() if "Measured top-1 accuracy" in line)
    assert f"{100 * accuracy['top1']:.1f} %" in line
    assert f"on the {accuracy['num_samples']} images of the test split" in line
    assert f"float Keras model it came from: {100 * accuracy['float_top1']:.1f} %" in line


def test_the_readme_says_when_the_accuracy_was_never_measured(deploy_run, tmp_path):
    # The session's tiny run exports its files by hand, without measuring them.
    readme = (bundle(deploy_run, out=tmp_path / "b") / "README.md").read_text()
    assert "accuracy was not measured at export" in readme
