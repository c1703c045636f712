"""edgecls predict: records, top-k order, labels from the sidecar, and one-line errors."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
from deploy_helpers import LABELS, assert_one_error_line, cli, cli_process_args

from edgecls.deploy.inputs import expand_inputs
from edgecls.deploy.prediction import predict_files, top_k_records
from edgecls.model_metadata import strip_tflite


def test_predict_folder_json_records(deploy_run, tmp_path, make_images, capsys):
    data = make_images(tmp_path / "imgs", per_class=2)
    code, out, err = cli(["predict", deploy_run / "exports" / "int8.tflite", data, "--top-k", "2", "--json"], capsys)
    assert code == 0, err
    records = json.loads(out)
    assert [r["file"] for r in records] == expand_inputs([data])
    assert len(records) == 6
    for record in records:
        assert set(record) == {"file", "top_k"}
        top = record["top_k"]
        assert len(top) == 2
        assert [set(t) for t in top] == [{"index", "label", "score"}] * 2
        assert top[0]["score"] >= top[1]["score"]
        assert all(t["label"] == LABELS[t["index"]] for t in top)
        assert all(0.0 <= t["score"] <= 1.0 for t in top)


def test_predict_lines_and_labels_from_sidecar(deploy_run, tmp_path, make_images, capsys):
    data = make_images(tmp_path / "imgs", per_class=1)
    model = tmp_path / "renamed.tflite"
    shutil.copy(deploy_run / "exports" / "int8.tflite", model)
    sidecar = json.loads((deploy_run / "exports" / "int8.json").read_text())
    sidecar["labels"] = ["cat", "dog", "fox"]
    (tmp_path / "renamed.json").write_text(json.dumps(sidecar))
    code, out, err = cli(["predict", model, data / "a" / "img_000.jpg", "--top-k", "3"], capsys)
    assert code == 0, err
    line = out.strip()
    assert line.startswith(str(data / "a" / "img_000.jpg") + ": ")
    assert sorted(part.split()[0] for part in line.split(": ", 1)[1].split(", ")) == ["cat", "dog", "fox"]


def test_top_k_ties_go_to_the_lower_index():
    records = top_k_records(["x"], np.array([[0.2, 0.4, 0.4]], np.float32), ["a", "b", "c"], 5)
    assert [t["index"] for t in records[0]["top_k"]] == [1, 2, 0]


def test_predict_library_takes_a_list_of_models(deploy_run, tmp_path, make_images):
    data = make_images(tmp_path / "imgs", per_class=1)
    results = predict_files([deploy_run / "exports" / "int8.tflite", deploy_run / "model.keras"], [data], top_k=1)
    assert [r.runtime for r in results] == ["tflite", "keras"]
    assert all(len(r.records) == 3 for r in results)


def test_model_without_sidecar_says_what_is_assumed(deploy_run, tmp_path, make_images, capsys):
    data = make_images(tmp_path / "imgs", per_class=1)
    model = tmp_path / "bare.tflite"
    model.write_bytes(strip_tflite((deploy_run / "exports" / "int8.tflite").read_bytes()))  # no embedded sidecar either
    code, out, err = cli(["predict", model, data, "--json", "--top-k", "1"], capsys)
    assert code == 0, err
    notes = err.strip().splitlines()
    assert len(notes) == 1 and notes[0].startswith("note: no sidecar for bare.tflite; assuming")
    assert {r["top_k"][0]["label"] for r in json.loads(out)} <= {"0", "1", "2"}


def test_bad_image_in_a_folder_is_skipped_and_counted(deploy_run, tmp_path, make_images, capsys):
    data = make_images(tmp_path / "imgs", per_class=1)
    (data / "a" / "broken.jpg").write_bytes(b"not a jpeg at all")
    code, out, err = cli(["predict", deploy_run / "exports" / "int8.tflite", data, "--json"], capsys)
    assert code == 0, err
    assert len(json.loads(out)) == 3
    assert "skipped 1 file" in err and "broken.jpg" in err


@pytest.mark.parametrize("case, fragment", [
    ("missing_image", "image not found"),
    ("random_bytes", "cannot load TFLite model"),
    ("txt_model", "unknown model type"),
    ("missing_model", "model file not found"),
    ("only_bad_image", "no usable image"),
    ("bad_top_k", "--top-k must be at least 1"),
])
def test_predict_errors_are_one_line(case, fragment, deploy_run, tmp_path, make_images, capsys):
    data = make_images(tmp_path / "imgs", per_class=1)
    model = deploy_run / "exports" / "int8.tflite"
    image = data / "a" / "img_000.jpg"
    extra = []
    if case == "missing_image":
        image = tmp_path / "nope.jpg"
    elif case == "random_bytes":
        model = tmp_path / "random.tflite"
        model.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    elif case == "txt_model":
        model = tmp_path / "model.txt"
        model.write_text("hello")
    elif case == "missing_model":
        model = tmp_path / "absent.tflite"
    elif case == "only_bad_image":
        image = tmp_path / "bad.png"
        image.write_bytes(b"\x89PNG broken")
    elif case == "bad_top_k":
        extra = ["--top-k", "0"]
    code, out, err = cli(["predict", model, image, *extra], capsys)
    assert_one_error_line(code, out, err, fragment)


def test_a_real_process_reports_a_corrupt_model_in_one_line(tmp_path, make_images):
    data = make_images(tmp_path / "imgs", per_class=1)
    model = tmp_path / "random.tflite"
    model.write_bytes(b"\x00" * 64 + b"garbage" * 100)
    result = subprocess.run(cli_process_args(["predict", model, data]), capture_output=True, text=True, timeout=120)
    assert_one_error_line(result.returncode, result.stdout, result.stderr, "cannot load TFLite model")
