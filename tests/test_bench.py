"""edgecls bench on tiny models: records, outputs, accuracy, parity, device import, errors."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from deploy_helpers import assert_one_error_line, cli

from edgecls.benchmarking.harness import bench
from edgecls.config import RunConfig
from edgecls.data.images import load_image_array
from edgecls.deploy.inputs import expand_inputs
from edgecls.deploy.runtimes import open_model

QUICK = ["--runs", "5", "--rounds", "2", "--warmup", "1", "--e2e-images", "3"]
RECORD_FIELDS = {"model", "name", "variant", "format", "runtime", "backend", "role", "source", "machine", "threads",
                 "input_size", "size_bytes", "load_ms", "peak_rss_mb", "rss_growth_mb", "latency_ms", "rounds",
                 "throughput_ips", "preprocess_ms", "end_to_end_ms", "images", "accuracy", "top5_accuracy",
                 "agreement", "reference"}


@pytest.fixture
def bench_data(tmp_path, make_images):
    return make_images(tmp_path / "data", per_class=4)


def _accuracy_via_predict(model_path, data) -> float:
    runtime = open_model(model_path, quiet=True)
    files = expand_inputs([data])
    images = np.stack([load_image_array(f, runtime.input_size) for f in files])
    truth = np.array([runtime.labels.index(f.split("/")[-2]) for f in files])
    return float(np.mean(runtime.predict(images).argmax(axis=1) == truth))


def test_bench_tflite_and_keras_writes_json_csv_png(deploy_run, bench_data, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, err = cli(["bench", deploy_run, "--data", bench_data, "--runtime", "all", *QUICK,
                             "--json", out / "bench.json", "--csv", out / "bench.csv"], capsys)
    assert code == 0, err
    records = json.loads((out / "bench.json").read_text())
    assert [(r["name"], r["runtime"]) for r in records] == [
        ("tinyrun/model.keras", "keras"), ("tinyrun/float32.tflite", "tflite"), ("tinyrun/int8.tflite", "tflite")]
    for record in records:
        assert RECORD_FIELDS <= set(record), RECORD_FIELDS - set(record)
        assert set(record["latency_ms"]) >= {"p50", "p90", "p99", "mean"}
        assert record["latency_ms"]["p50"] <= record["latency_ms"]["p90"] <= record["latency_ms"]["p99"]
        assert record["rounds"]["count"] == 2 and len(record["rounds"]["medians_ms"]) == 2
        assert record["threads"] == 1 and record["images"] == 12 and record["source"] == "host"
        assert record["input"] == "images" and record["accuracy_measured"] is True
        assert record["accuracy"] == pytest.approx(_accuracy_via_predict(record["model"], bench_data), abs=1e-12)
        assert record["top5_accuracy"] is None  # three classes: top-5 says nothing
        assert record["preprocess_ms"]["p50"] > 0 and record["end_to_end_ms"]["p50"] > record["preprocess_ms"]["p50"]
    keras, *exports = records
    assert keras["role"] == "reference" and keras["agreement"] is None
    for record in exports:  # parity with the run's model.keras
        assert 0.0 <= record["agreement"] <= 1.0
        assert record["reference"] == str(deploy_run / "model.keras")
    rows = list(csv.DictReader((out / "bench.csv").open()))
    assert [r["runtime"] for r in rows] == ["keras", "tflite", "tflite"]
    assert float(rows[2]["latency_p50_ms"]) == pytest.approx(records[2]["latency_ms"]["p50"])
    assert (out / "bench.png").read_bytes()[:4] == b"\x89PNG"
    assert "int8.tflite" in stdout and "p50" in stdout


def test_runtime_filter_and_explicit_reference(deploy_run, bench_data):
    result = bench([deploy_run], data=bench_data, runtime="tflite", runs=3, rounds=1, warmup=0, e2e_images=1, progress=False)
    assert {r["runtime"] for r in result} == {"tflite"}
    assert all(r["agreement"] is None for r in result)  # tflite only: no Keras loaded for parity
    result = bench([deploy_run / "exports" / "int8.tflite"], data=bench_data, runtime="tflite", reference=deploy_run, runs=3, rounds=1,
                   warmup=0, e2e_images=1, progress=False)
    assert result[0]["agreement"] is not None


def test_device_rows_from_pi_infer_join_the_table(deploy_run, bench_data, pi_infer, tmp_path, capsys):
    device_file = tmp_path / "pi_bench.json"
    assert pi_infer.main([str(deploy_run / "exports" / "int8.tflite"), str(bench_data), "--bench", "6", "--rounds", "2",
                          "--warmup", "1", "--e2e-images", "2", "--bench-json", str(device_file)]) == 0
    capsys.readouterr()
    device = json.loads(device_file.read_text())
    assert device[0]["source"] == "device" and device[0]["rounds"]["count"] == 2
    assert device[0]["accuracy"] == pytest.approx(_accuracy_via_predict(deploy_run / "exports" / "int8.tflite", bench_data))

    code, stdout, err = cli(["bench", "--import", device_file], capsys)
    assert code == 0, err
    assert "device" in stdout and "int8.tflite" in stdout

    out = tmp_path / "joined.json"
    code, stdout, err = cli(["bench", deploy_run / "exports" / "int8.tflite", "--data", bench_data, "--runtime", "tflite", *QUICK,
                             "--import", device_file, "--json", out], capsys)
    assert code == 0, err
    records = json.loads(out.read_text())
    assert [r["source"] for r in records] == ["host", "device"]
    assert RECORD_FIELDS <= set(records[1])


@pytest.mark.parametrize("case, fragment", [
    ("bad_runtime", "unknown runtime 'gpu'"),
    ("no_onnx_model", "no model to run in the onnx runtime"),
    ("missing_model", "model file not found"),
    ("nothing", "give a MODEL"),
    ("bad_import", "holds no bench records"),
    ("not_json_import", "not JSON"),
])
def test_bench_errors_are_one_line(case, fragment, deploy_run, bench_data, tmp_path, capsys):
    model = deploy_run / "exports" / "int8.tflite"
    args = {
        "bad_runtime": ["bench", model, "--data", bench_data, "--runtime", "gpu"],
        "no_onnx_model": ["bench", model, "--data", bench_data, "--runtime", "onnx"],
        "missing_model": ["bench", tmp_path / "nope.tflite", "--data", bench_data],
        "nothing": ["bench"],
        "bad_import": ["bench", "--import", tmp_path / "empty.json"],
        "not_json_import": ["bench", "--import", tmp_path / "text.json"],
    }[case]
    (tmp_path / "empty.json").write_text("[]")
    (tmp_path / "text.json").write_text("p50 was fast")
    code, out, err = cli(args, capsys)
    assert_one_error_line(code, out, err, fragment)


def test_without_data_bench_times_synthetic_input_and_says_accuracy_was_not_measured(deploy_run, tmp_path, capsys):
    model = deploy_run / "exports" / "int8.tflite"
    out = tmp_path / "bench.json"
    code, stdout, err = cli(["bench", model, "--runtime", "tflite", *QUICK, "--json-out", out, "--csv",
                             tmp_path / "bench.csv"], capsys)
    assert code == 0, err
    assert "accuracy not measured" in err and "synthetic input" in err
    assert "not measured" in stdout and "synthetic input" in stdout  # the table's top-1 cell and its caption
    (record,) = json.loads(out.read_text())
    assert RECORD_FIELDS <= set(record), RECORD_FIELDS - set(record)
    assert record["input"] == "synthetic" and record["accuracy_measured"] is False
    assert record["accuracy"] is None and record["top5_accuracy"] is None and record["images"] == 0
    assert record["data"] is None and record["end_to_end_ms"]["p50"] is None
    assert record["input_size"] == list(open_model(model, quiet=True).input_size)
    assert 0 < record["latency_ms"]["p50"] <= record["latency_ms"]["p99"]
    assert record["rounds"]["count"] == 2
    row = next(csv.DictReader((tmp_path / "bench.csv").open()))
    assert row["input"] == "synthetic" and row["accuracy_measured"] == "False" and row["accuracy"] == ""
    assert not (tmp_path / "bench.png").exists()  # nothing to plot: no accuracy

    code, stdout, err = cli(["bench", model, "--json", *QUICK], capsys)  # --json: the records, the note on stderr
    assert code == 0, err
    assert json.loads(stdout)[0]["accuracy_measured"] is False and "accuracy not measured" in err


def test_parity_compares_every_two_runtimes_of_one_model(deploy_run, bench_data, tmp_path, capsys):
    import edgecls
    from edgecls.deploy import mediapipe_client

    out = tmp_path / "bench.json"
    code, stdout, err = cli(["bench", deploy_run, "--data", bench_data, "--parity", *QUICK, "--json-out", out], capsys)
    assert code == 0, err
    records = json.loads(out.read_text())
    keras, float32, int8 = records
    by_pair = {(p["a"]["name"], p["a"]["runtime"], p["b"]["name"], p["b"]["runtime"]): p
               for r in records for p in r["parity"]}
    k, f, i = "tinyrun/model.keras", "tinyrun/float32.tflite", "tinyrun/int8.tflite"
    expected = {(k, "keras", f, "tflite"), (k, "keras", i, "tflite"), (f, "tflite", i, "tflite")}
    with_mediapipe = mediapipe_client.available()
    if with_mediapipe:  # MediaPipe on each .tflite pairs with every other answer of the same model
        expected |= {(k, "keras", f, "mediapipe"), (k, "keras", i, "mediapipe"), (f, "tflite", f, "mediapipe"),
                     (f, "tflite", i, "mediapipe"), (f, "mediapipe", i, "tflite"), (f, "mediapipe", i, "mediapipe"),
                     (i, "tflite", i, "mediapipe")}
    assert set(by_pair) == expected
    for pair in by_pair.values():
        assert pair["images"] == 12 and 0 <= pair["agreement"] <= 1
        assert 0 <= pair["mean_abs_dp"] <= pair["max_abs_dp"] <= 1
    keras_int8 = by_pair[(k, "keras", i, "tflite")]
    assert keras_int8["agreement"] == pytest.approx(int8["agreement"])  # bench's own agreement, from the pair
    assert keras_int8["top1_a"] == pytest.approx(keras["accuracy"]) and keras_int8["top1_b"] == pytest.approx(int8["accuracy"])
    assert by_pair[(k, "keras", f, "tflite")]["max_abs_dp"] < 1e-4  # float32 TFLite computes what Keras does
    if with_mediapipe:  # the same file, the same pixels: the same answers
        same_file = by_pair[(i, "tflite", i, "mediapipe")]
        assert same_file["agreement"] == 1.0 and same_file["max_abs_dp"] < 1e-3, same_file
    else:
        assert "MediaPipe" in err
    assert "parity" in stdout and "max |Δp|" in stdout

    run = tmp_path / "tinyrun"  # the report of a copy of the run with this bench.json in its exports
    shutil.copytree(deploy_run, run)
    shutil.copyfile(out, run / "exports" / "bench.json")
    (run / "config.yaml").write_text(RunConfig().to_yaml())  # deploy_run was never trained: the report wants one
    html = edgecls.report(run).read_text()
    table = html.split('id="parity"')[1].split("</table>")[0]
    assert "int8.tflite (tflite)" in table and "model.keras (keras)" in table and "tinyrun/" not in table


def test_data_classes_must_match_the_model_labels(deploy_run, tmp_path, make_images, capsys):
    data = make_images(tmp_path / "other", classes=("a", "zebra"), per_class=2)
    code, out, err = cli(["bench", deploy_run / "exports" / "int8.tflite", "--data", data, *QUICK], capsys)
    assert_one_error_line(code, out, err, "class 'zebra' of the data is not among the labels")


def test_onnx_models_run_in_the_onnx_runtime(tmp_path, bench_data, capsys):
    from deploy_helpers import onnx_model

    model = onnx_model(tmp_path / "m" / "mean.onnx")
    code, out, err = cli(["predict", model, bench_data, "--json", "--top-k", "1"], capsys)
    assert code == 0, err
    assert len(json.loads(out)) == 12
    record = bench([model], data=bench_data, runtime="all", runs=3, rounds=1, warmup=0, e2e_images=1,
                   progress=False)[0]
    assert record["runtime"] == "onnx" and record["backend"].startswith("onnxruntime")
    assert record["accuracy"] == pytest.approx(_accuracy_via_predict(model, bench_data))
