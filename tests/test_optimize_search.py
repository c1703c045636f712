"""edgecls optimize: choose on validation, respect the budget, keep what was measured, say why."""

import csv
import json
import shutil

import numpy as np
import pytest
from deploy_helpers import tflite_outputs
from model_checks import check_standard_metadata

from edgecls.errors import EdgeclsError
from edgecls.results import OptimizeResult
from edgecls.searching import leaderboard as board
from edgecls.searching.variant_search import optimize_run, parse_duration

SIZE = 32
CONTRACT_KEYS = {"variant", "format", "path", "val_accuracy", "test_accuracy", "latency_ms", "size_bytes",
                 "gzip_bytes", "partitions", "chosen"}
FAST = dict(calibration=16, rounds=2, runs=5, warmup=1, verbose=0)


@pytest.fixture
def run_copy(colour_run, tmp_path):
    """A private copy of the run, for tests that write their own leaderboard into it."""
    target = tmp_path / "run"
    shutil.copytree(colour_run, target, ignore=shutil.ignore_patterns("exports"))
    return target


@pytest.fixture(scope="module")
def searched(colour_run) -> OptimizeResult:
    return optimize_run(colour_run, max_drop=0.5, qat_epochs=1, **FAST)


# ------------------------------------------------------------------ selection, on records


def _record(variant, val, test, latency, *, gzip=1000, family=None, integer=True, fmt="tflite"):
    return {"variant": variant, "format": fmt, "family": family or variant, "val_accuracy": val,
            "test_accuracy": test, "val_drop_pt": board.val_drop_pt(val, 0.90),
            "latency_ms": latency, "gzip_bytes": gzip, "integer": integer}


def test_selection_reads_validation_and_never_test():
    # Planted: on test, "slow" looks lossless and "fast" loses 3 pt; on validation it is the
    # other way round. Choosing by validation must hand back "fast" (and would not by test).
    records = [_record("float32", 0.90, 0.90, 10.0, family="float32", integer=False),
               _record("fast", 0.898, 0.87, 3.0),
               _record("slow", 0.88, 0.90, 5.0)]
    board.mark_budget(records, max_drop=0.5)
    assert [r["within_budget"] for r in records] == [True, True, False]
    assert board.choose(records, "latency")["variant"] == "fast"
    swapped = [dict(r, val_accuracy=r["test_accuracy"], val_drop_pt=board.val_drop_pt(r["test_accuracy"], 0.90))
               for r in records]
    board.mark_budget(swapped, max_drop=0.5)
    assert board.choose(swapped, "latency")["variant"] == "slow"


def test_budget_is_absolute_points_and_int8_slower_than_float_is_never_chosen():
    records = [_record("float32", 0.90, 0.90, 4.0, family="float32", integer=False, gzip=4000),
               _record("int8", 0.8951, 0.89, 4.5, gzip=1000),  # −0.49 pt: within 0.5 pt, but slower
               _record("dynamic", 0.8949, 0.89, 3.0, integer=False, gzip=1100)]  # −0.51 pt: outside
    board.mark_budget(records, max_drop=0.5)
    assert [r["within_budget"] for r in records] == [True, False, False]
    assert records[1]["slower_than_float32"] and not records[2]["slower_than_float32"]
    assert board.choose(records, "size")["variant"] == "float32"
    board.mark_budget(records, max_drop=0.52)
    assert board.choose(records, "latency")["variant"] == "dynamic"
    assert board.choose([], "latency") is None


def test_latency_ties_go_to_the_more_accurate():
    records = [_record("float32", 0.90, 0.9, 10.0, family="float32", integer=False),
               _record("int8", 0.896, 0.9, 2.00), _record("int8_pct", 0.899, 0.9, 2.04)]
    board.mark_budget(records, max_drop=0.5)
    assert board.choose(records, "latency")["variant"] == "int8_pct"


def test_parse_duration():
    assert parse_duration(None) is None
    assert parse_duration(45) == 45
    assert parse_duration("90") == 90 and parse_duration("90s") == 90
    assert parse_duration("30m") == 1800 and parse_duration("1h") == 3600 and parse_duration("1h30m") == 5400
    for bad in ("soon", "", "-5m", "0", -3, "5 parsecs"):
        with pytest.raises(EdgeclsError, match="time budget"):
            parse_duration(bad)


# ------------------------------------------------------------------ one search, end to end


def test_search_writes_leaderboard_plot_and_best_within_budget(searched, colour_run):
    out = colour_run / "exports" / "optimize"
    assert searched.out_dir == out and searched.within_budget and searched.stop_reason
    data = json.loads((out / "leaderboard.json").read_text())
    assert data["max_drop_pt"] == 0.5 and "absolute" in data["budget"]
    assert [r["variant"] for r in data["candidates"]] == [r["variant"] for r in searched.leaderboard]
    for record in searched.leaderboard:
        assert CONTRACT_KEYS <= set(record), CONTRACT_KEYS - set(record)
        assert 0 <= record["val_accuracy"] <= 1 and 0 <= record["test_accuracy"] <= 1
        assert record["within_budget"] == (record["val_drop_pt"] <= 0.5 + 1e-9 and not record["slower_than_float32"])
        assert record["latency_ms"] > 0 and record["size_bytes"] > 0
    chosen = [r for r in searched.leaderboard if r["chosen"]]
    assert len(chosen) == 1 and chosen[0] == searched.chosen
    assert searched.chosen["val_drop_pt"] <= 0.5
    fastest = min(r["latency_ms"] for r in searched.leaderboard if r["within_budget"])
    assert searched.chosen["latency_ms"] <= fastest * (1 + board.LATENCY_TIE)
    with open(out / "leaderboard.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["variant"] for row in rows] == [r["variant"] for r in searched.leaderboard]
    assert data["where"]["on"] == "host" and data["where"]["cpu_flags"] is not None  # where the latencies were taken
    assert all(r["where"] == data["where"] for r in data["candidates"])
    assert all(row["where"].startswith("host: ") for row in rows)
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert searched.best_path == colour_run / "exports" / "best.tflite"
    if searched.best_path.suffix == ".tflite":  # the same model; the embedded sidecar says why it is the best
        from edgecls.model_metadata import strip_tflite, tflite_sidecar

        chosen_bytes = open(searched.chosen["path"], "rb").read()
        assert strip_tflite(searched.best_path.read_bytes()) == strip_tflite(chosen_bytes)
        embedded = tflite_sidecar(searched.best_path)
        assert embedded["model_file"] == "best.tflite" and embedded["optimize"]["chosen"] == searched.chosen["variant"]
        check_standard_metadata(searched.best_path)
    sidecar = json.loads((colour_run / "exports" / "best.json").read_text())
    assert sidecar["model_file"] == "best.tflite" and sidecar["labels"] == ["class0", "class1", "class2"]
    assert sidecar["optimize"]["chosen"] == searched.chosen["variant"]
    assert sidecar["optimize"]["max_drop_pt"] == 0.5 and "validation" in sidecar["optimize"]["why"]
    assert sidecar["optimize"]["latency_where"]["on"] == "host"
    assert searched.chosen["variant"] in searched.summary_line()
    assert searched.to_dict() == searched.leaderboard  # what --json prints: the list of records


def test_candidates_are_scored_on_the_validation_split(searched, colour_run):
    from edgecls.deploy.runtimes import open_model
    from edgecls.training.run_context import load_run

    ctx = load_run(colour_run, verbose=0)
    for record in searched.leaderboard[:4]:
        model = open_model(record["path"], quiet=True)
        assert record["val_accuracy"] == pytest.approx(np.mean(model.predict(ctx.val_images).argmax(1) == ctx.val_labels))
        assert record["test_accuracy"] == pytest.approx(np.mean(model.predict(ctx.test_images).argmax(1) == ctx.test_labels))


def test_search_stops_when_no_remaining_step_can_beat_the_best(searched):
    # int8 calibration variants, percentile ranges, QAT and fallback run int8's graph: once an
    # int8 model is within budget they cannot be faster, and the search says so.
    variants = [r["variant"] for r in searched.leaderboard]
    assert variants[:4] == ["float32", "float16", "dynamic", "int8"]
    int8 = next(r for r in searched.leaderboard if r["variant"] == "int8")
    if int8["val_drop_pt"] <= 0.5:
        assert variants == ["float32", "float16", "dynamic", "int8"]
        assert searched.stop_reason.startswith("no remaining step can beat")
        assert "qat_int8" in searched.stop_reason and "int8_fallback" in searched.stop_reason


def test_nothing_within_budget_still_writes_everything(run_copy, tmp_path):
    from edgecls.models.modeling import build_model

    untrained = build_model("tiny_cnn", SIZE, 3, weights="none")
    path = tmp_path / "untrained.keras"
    untrained.save(path)
    result = optimize_run(run_copy, max_drop=0.5, model=path, qat_epochs=0, **FAST)
    assert not result.within_budget and result.chosen is None and result.best_path is None
    assert not any(r["chosen"] for r in result.leaderboard)
    assert all(r["val_drop_pt"] > 0.5 for r in result.leaderboard)
    out = run_copy / "exports" / "optimize"
    assert (out / "leaderboard.json").is_file() and (out / "leaderboard.csv").is_file() and (out / "pareto.png").is_file()
    assert not (run_copy / "exports" / "best.tflite").exists()
    line = result.summary_line()
    assert "nothing within" in line and "closest" in line and board.closest(result.leaderboard)["variant"] in line
    assert "\n" not in line
    # the last resort ran, and shows what keeping ops in float costs
    fallback = [r for r in result.leaderboard if r["family"] == "int8_fallback"]
    assert fallback and all(r["partitions"] is not None and r["latency_ms"] > 0 for r in fallback)


def test_interrupted_search_keeps_its_leaderboard_and_resume_skips_what_was_measured(run_copy, monkeypatch):
    from edgecls.searching import candidates

    real_int8 = candidates.TfliteBuilder.int8

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(candidates.TfliteBuilder, "int8", interrupted)
    with pytest.raises(KeyboardInterrupt):
        optimize_run(run_copy, max_drop=0.5, qat_epochs=0, **FAST)
    out = run_copy / "exports" / "optimize"
    data = json.loads((out / "leaderboard.json").read_text())
    assert data["status"] == "interrupted"
    assert [r["variant"] for r in data["candidates"]] == ["float32", "float16", "dynamic"]
    kept = {name: (out / f"{name}.tflite").stat().st_mtime_ns for name in ("float32", "float16", "dynamic")}

    monkeypatch.setattr(candidates.TfliteBuilder, "int8", real_int8)
    result = optimize_run(run_copy, max_drop=0.5, qat_epochs=0, resume=True, **FAST)
    resumed = {r["variant"] for r in result.leaderboard if r.get("resumed")}
    assert resumed == {"float32", "float16", "dynamic"}
    assert "int8" in {r["variant"] for r in result.leaderboard} and result.within_budget
    assert {name: (out / f"{name}.tflite").stat().st_mtime_ns for name in kept} == kept


def test_time_budget_stops_the_search_and_says_so(run_copy):
    result = optimize_run(run_copy, max_drop=0.5, time_budget=0.001, **FAST)
    assert [r["variant"] for r in result.leaderboard] == ["float32"]
    assert "time budget" in result.stop_reason and result.chosen["variant"] == "float32"


def test_onnx_search_never_hands_back_int8_slower_than_fp32(run_copy):
    result = optimize_run(run_copy, max_drop=0.5, runtime="onnx", **FAST)
    variants = [r["variant"] for r in result.leaderboard]
    assert variants[0] == "onnx_float32" and {"onnx_int8", "onnx_int8_qoperator", "onnx_int8_s8s8"} <= set(variants)
    float_ms = result.leaderboard[0]["latency_ms"]
    if result.chosen["integer"]:
        assert result.chosen["latency_ms"] <= float_ms
    assert result.best_path == run_copy / "exports" / "best.onnx" and result.best_path.is_file()


@pytest.mark.parametrize("kwargs, message", [
    (dict(max_drop=-1), "max-drop must be 0 or more"),
    (dict(objective="speed"), "unknown objective 'speed'"),
    (dict(runtime="tensorrt"), "unknown runtime 'tensorrt'"),
    (dict(time_budget="soon"), "bad time budget 'soon'"),
    (dict(threads=0), "threads"),
])
def test_user_errors_are_one_line(colour_run, kwargs, message):
    with pytest.raises(EdgeclsError, match=message) as info:
        optimize_run(colour_run, **{**FAST, **kwargs})
    assert "\n" not in str(info.value)


def test_a_folder_that_is_no_run_is_one_line(tmp_path):
    with pytest.raises(EdgeclsError, match="not a run folder") as info:
        optimize_run(tmp_path, **FAST)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------ the PTQ tools it searches with


def test_calibrated_int8_tools():
    from edgecls.compression import calibrated_int8
    from edgecls.converters import tflite_convert
    from edgecls.converters.tflite_inspect import inspect_tflite
    from edgecls.models.modeling import build_model

    model = build_model("tiny_cnn", SIZE, 3, weights="none")
    images = np.random.default_rng(0).integers(0, 256, (12, SIZE, SIZE, 3)).astype(np.uint8)
    calibrated = calibrated_int8.calibrate(model, images)
    quantized = calibrated_int8.quantize_calibrated(calibrated)
    # Split in two, the steps make exactly the model the one-call conversion makes.
    reference = tflite_convert.convert(model, "int8", calibration=images)
    assert tflite_outputs(quantized, images).tolist() == tflite_outputs(reference, images).tolist()
    # Percentile ranges only ever narrow a range; the input keeps 0-255 (uint8 pixels at scale 1).
    narrowed = calibrated_int8.percentile_ranges(calibrated, images, percentile=99.0)
    before, after = _ranges(calibrated), _ranges(narrowed)
    assert before.keys() == after.keys()
    assert all(after[k][0] >= before[k][0] - 1e-6 and after[k][1] <= before[k][1] + 1e-6 for k in before)
    assert any(after[k] != before[k] for k in before)
    info = inspect_tflite(calibrated_int8.quantize_calibrated(narrowed))
    assert info["input"]["scale"] == 1.0 and info["input"]["zero_point"] == 0 and info["float_ops"] == []
    # Ranking names real ops; keeping the worst one float leaves exactly that op in float.
    ranked = calibrated_int8.rank_ops_by_error(calibrated, quantized, images)
    assert {name for name, _ in ranked} == set(calibrated_int8.op_outputs(calibrated))
    worst = ranked[0][0]
    mixed = inspect_tflite(calibrated_int8.quantize_calibrated(calibrated, float_nodes=[worst]))
    assert len(mixed["float_ops"]) == 1


def _ranges(calibrated) -> dict:
    from edgecls.compression.calibrated_int8 import _model_object

    graph = _model_object(calibrated).subgraphs[0]
    return {t.name.decode(): (float(t.quantization.min[0]), float(t.quantization.max[0]))
            for t in graph.tensors if t.quantization is not None and t.quantization.min is not None
            and len(t.quantization.min) == 1}


# ------------------------------------------------------------------ QAT starts where PTQ is


def test_qat_model_before_its_first_step_scores_what_ptq_scores(colour_run):
    from edgecls.compression import qat
    from edgecls.converters import tflite_convert
    from edgecls.converters.graph_rewrite import split_fused_activations
    from edgecls.training.run_context import load_run

    ctx = load_run(colour_run, verbose=0)
    # The run holds 120 images, too few for a 0.5 pt comparison (one image is 0.8 pt): draw 1,200
    # more from the same three colour classes, at the model's input size.
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(3), 400)
    colours = np.array([(220, 40, 40), (40, 200, 40), (40, 40, 220)])[labels]
    noise = rng.integers(-60, 61, (len(labels), SIZE, SIZE, 3))
    images = np.clip(colours[:, None, None, :] + noise, 0, 255).astype(np.uint8)
    calibration = ctx.calibration_images(32)
    ptq = tflite_outputs(tflite_convert.convert(ctx.model, "int8", calibration=calibration), images, dequantize=True)
    graph = tflite_convert.logits_model(ctx.model)
    # A QAT model made before this one (as in any longer session) gives this one's layers numbered
    # names ("quantize_layer_1"): the ranges must be found all the same.
    fresh = qat.quantize_aware_model(graph)
    model = qat.quantize_aware_model(graph)
    assert not any(layer.name == "quantize_layer" for layer in model.layers)
    qat.initialise_ranges(model, split_fused_activations(graph), calibration)
    logits = model(images.astype(np.float32), training=False).numpy()
    ptq_top1 = np.mean(ptq.argmax(1) == labels)
    assert abs(np.mean(logits.argmax(1) == labels) - ptq_top1) * 100 <= 0.5
    assert np.mean(logits.argmax(1) == ptq.argmax(1)) >= 0.99
    # tfmot's own start ([-6, 6] for every activation and weight) is far from it
    assert np.abs(fresh(images[:8].astype(np.float32), training=False).numpy() - ptq[:8]).max() > \
        4 * np.abs(logits[:8] - ptq[:8]).max()


def test_qat_keeps_batch_norm_statistics_frozen(colour_run):
    from edgecls.compression import qat
    from edgecls.converters import tflite_convert
    from edgecls.tf import keras
    from edgecls.training.run_context import load_run

    ctx = load_run(colour_run, verbose=0)
    model = qat.quantize_aware_model(tflite_convert.logits_model(ctx.model))
    assert qat.freeze_batch_norm(model) == 2
    bn = next(layer.layer for layer in model.layers if isinstance(getattr(layer, "layer", None),
                                                                    keras.layers.BatchNormalization))
    conv = next(layer for layer in model.layers if layer.name == "quant_block1_conv")
    kernel = next(w for w in conv.trainable_weights if "kernel" in w.name)  # the wrapper swaps .kernel
    before_mean, before_kernel = bn.moving_mean.numpy().copy(), np.array(kernel.numpy())
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    images = ctx.data.train.images[:16].astype(np.float32)
    model.train_on_batch(images, keras.utils.to_categorical(ctx.data.train.labels[:16], 3))
    assert np.array_equal(bn.moving_mean.numpy(), before_mean)
    assert not np.array_equal(kernel.numpy(), before_kernel)


def test_qat_that_lowers_validation_accuracy_hands_back_the_calibrated_start(colour_run):
    from edgecls.compression import qat
    from edgecls.training.run_context import load_run

    ctx = load_run(colour_run, verbose=0)
    # A learning rate no one should use wrecks the model in one epoch; QAT must not ship that.
    model, _, selection = qat.train_quantization_aware(ctx, epochs=1, lr=30.0, batch_size=None, verbose=0)
    start, after = selection["val_accuracy_by_epoch"]
    assert after < start, "the destructive epoch should score worse on validation"
    assert selection["kept_epoch"] == 0
    logits = model(ctx.data.val.images.astype(np.float32), training=False).numpy()
    assert np.mean(logits.argmax(1) == ctx.data.val.labels) == pytest.approx(start)
