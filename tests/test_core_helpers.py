"""The one-helper-per-job core modules: errors.first_line, progress, timing, run_folder, metrics."""

from __future__ import annotations

import time

import numpy as np
import pytest

from edgecls import metrics, progress, run_folder, timing
from edgecls.errors import first_line
from edgecls.run_folder import RunFolder

# --------------------------------------------------------------------------- first_line


def test_first_line_takes_the_first_line_only():
    err = RuntimeError("  cannot parse graph: bad node\nTraceback-like detail\nmore\n")
    assert first_line(err) == "cannot parse graph: bad node"


def test_first_line_of_an_empty_message_is_the_type_name():
    assert first_line(KeyError()) == "KeyError"
    assert first_line(ValueError("   \n  ")) == "ValueError"


def test_first_line_is_cut_to_the_limit():
    err = ValueError("x" * 1000)
    assert first_line(err) == "x" * 200
    assert first_line(err, limit=30) == "x" * 30


# --------------------------------------------------------------------------- progress


def test_progress_bar_writes_nothing_to_stdout(capsys):
    with progress.progress_bar("working", 3) as advance:
        advance()
        advance(2)
    with progress.progress_bar("unknown length", None, enabled=False) as advance:
        advance()
    assert capsys.readouterr().out == ""


def test_phased_progress_writes_nothing_to_stdout(capsys):
    with progress.PhasedProgress() as bar:
        for row in ("a.tflite on tflite", "b.onnx on onnx"):
            bar.start_row(row)
            bar.phase("load")
            bar.plan(4)
            bar.advance(4)
    assert capsys.readouterr().out == ""


# --------------------------------------------------------------------------- timing


def test_percentiles_ms_converts_nanoseconds():
    stats = timing.percentiles_ms([1_000_000, 2_000_000, 3_000_000])
    assert stats["p50"] == pytest.approx(2.0)
    assert stats["min"] == pytest.approx(1.0)
    assert stats["mean"] == pytest.approx(2.0)
    assert timing.percentiles_ms([])["p50"] is None


def test_interleaved_latency_ranks_calls_by_cost_and_alternates_them():
    order = []

    def cheap():
        order.append("cheap")

    def costly():
        order.append("costly")
        end = time.perf_counter_ns() + 2_000_000  # 2 ms of busy work: well above timer noise
        while time.perf_counter_ns() < end:
            pass

    steps = []
    result = timing.interleaved_latency({"costly": costly, "cheap": cheap}, rounds=3, runs=4, warmup=2,
                                        advance=steps.append)
    assert set(result) == {"costly", "cheap"}
    assert result["costly"]["median_ms"] > 10 * result["cheap"]["median_ms"]
    assert result["costly"]["median_ms"] >= 2.0
    for stats in result.values():
        assert len(stats["round_medians_ms"]) == 3
        assert stats["median_ms"] == pytest.approx(float(np.median(stats["round_medians_ms"])))
        assert stats["latency_ms"]["p50"] is not None
    # Warm-up of each call, then each round times every call in turn, in the mapping's order.
    expected = ["costly"] * 2 + ["cheap"] * 2 + (["costly"] * 4 + ["cheap"] * 4) * 3
    assert order == expected
    assert steps == [2, 2] + [4] * 6
    assert sum(steps) == 2 * (2 + 3 * 4)


def test_interleaved_latency_refuses_no_work():
    with pytest.raises(ValueError):
        timing.interleaved_latency({})
    with pytest.raises(ValueError):
        timing.interleaved_latency({"a": lambda: None}, runs=0)


def test_spread_pct():
    assert timing.spread_pct([1.0, 1.0, 1.0]) == 0.0
    assert timing.spread_pct([0.9, 1.0, 1.1]) == pytest.approx(20.0)


# --------------------------------------------------------------------------- run_folder


def test_run_folder_names_every_file(tmp_path):
    run = RunFolder(tmp_path)
    assert run.config == tmp_path / "config.yaml"
    assert run.model == tmp_path / "model.keras"
    assert run.labels == tmp_path / "labels.txt"
    assert run.history == tmp_path / "history.csv"
    assert run.metrics == tmp_path / "metrics.json"
    assert run.classification_report_txt == tmp_path / "classification_report.txt"
    assert run.classification_report_json == tmp_path / "classification_report.json"
    assert run.misclassified == tmp_path / "misclassified.csv"
    assert run.plots == tmp_path / "plots"
    assert run.data_scan == tmp_path / "data_scan.json"
    assert run.skipped_files == tmp_path / "skipped_files.txt"
    assert run.exports == tmp_path / "exports"
    assert run.eval == tmp_path / "eval"
    assert run.report_html == tmp_path / "report.html"
    assert run.tensorboard == tmp_path / "tensorboard"
    assert run.optimize == tmp_path / "exports" / "optimize"
    assert run.bench_json == tmp_path / "exports" / "bench.json"
    assert run.int8_tflite == run.export("int8", ".tflite") == tmp_path / "exports" / "int8.tflite"
    assert run.best(".onnx") == tmp_path / "exports" / "best.onnx"
    assert run.leaderboard == tmp_path / "exports" / "optimize" / "leaderboard.json"
    # An evaluation folder holds the same report files.
    assert RunFolder(run.eval).metrics == tmp_path / "eval" / "metrics.json"


def test_run_folder_is_a_value(tmp_path):
    assert RunFolder(str(tmp_path)) == RunFolder(tmp_path)
    assert len({RunFolder(tmp_path), RunFolder(str(tmp_path))}) == 1
    with pytest.raises(AttributeError):
        RunFolder(tmp_path).path = tmp_path / "other"


def test_is_run_needs_the_config(tmp_path):
    run = RunFolder(tmp_path)
    run.model.write_bytes(b"")
    assert not run.is_run()
    run.config.write_text("model: {}\n")
    assert run.is_run()


def test_run_folder_names_are_distinct(tmp_path):
    run = RunFolder(tmp_path)
    names = [getattr(run, name) for name in dir(RunFolder)
             if isinstance(getattr(RunFolder, name), property)]
    assert len(names) == len(set(names)) > 20
    assert all(isinstance(path, type(tmp_path)) for path in names)
    assert run_folder.MODEL == "model.keras"


# --------------------------------------------------------------------------- metrics


def test_top1_and_top_k_on_hand_computed_scores():
    labels = np.array([0, 1, 2, 2])
    probs = np.array([
        [0.7, 0.2, 0.1],  # right
        [0.5, 0.3, 0.2],  # second
        [0.5, 0.3, 0.2],  # third
        [0.1, 0.1, 0.8],  # right
    ])
    assert metrics.top1_accuracy(labels, probs) == 0.5
    assert metrics.top_k_accuracy(labels, probs, 2) == 0.75
    assert metrics.top_k_accuracy(labels, probs, 3) == 1.0
    assert metrics.top_k_or_none(labels, probs, 5) is None


def test_ties_go_to_the_lower_index_in_top1_and_top_k():
    probs = np.full((1, 4), 0.25)
    # All four scores equal: argmax picks class 0, and top-2 holds classes 0 and 1 only.
    assert metrics.top1_accuracy([0], probs) == 1.0
    assert metrics.top1_accuracy([1], probs) == 0.0
    assert metrics.top_k_accuracy([1], probs, 2) == 1.0
    assert metrics.top_k_accuracy([2], probs, 2) == 0.0
    # top-1 under the top-k rule is the top-1 accuracy, ties included.
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 3, (200, 6)).astype(float)
    y = rng.integers(0, 6, 200)
    assert metrics.top_k_accuracy(y, scores, 1) == metrics.top1_accuracy(y, scores)


def test_accuracy_refuses_mismatched_inputs():
    with pytest.raises(ValueError):
        metrics.top1_accuracy([0, 1], np.zeros((3, 2)))
    with pytest.raises(ValueError):
        metrics.top1_accuracy([0, 5], np.zeros((2, 2)))
    with pytest.raises(ValueError):
        metrics.top_k_accuracy([0], np.zeros((1, 2)), 0)


def test_confusion_matrix_counts_rows_true_columns_predicted():
    cm = metrics.confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    with pytest.raises(ValueError):
        metrics.confusion_matrix([0, 3], [0, 0], 3)


def test_classification_metrics_matches_scikit_learn():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    for _ in range(50):
        c, n = int(rng.integers(2, 8)), int(rng.integers(1, 30))
        y = rng.integers(0, c - 1, n)  # the last class never occurs: the averages must skip it
        probs = np.round(rng.random((n, c)), 1)  # rounded, so ties happen
        m = metrics.classification_metrics(y, probs, [f"c{i}" for i in range(c)])
        pred = probs.argmax(axis=1)
        macro = sk.precision_recall_fscore_support(y, pred, average="macro", zero_division=0)
        weighted = sk.precision_recall_fscore_support(y, pred, average="weighted", zero_division=0)
        assert m["macro_precision"] == pytest.approx(macro[0])
        assert m["macro_recall"] == pytest.approx(macro[1])
        assert m["macro_f1"] == pytest.approx(macro[2])
        assert m["weighted_f1"] == pytest.approx(weighted[2])
        assert m["accuracy"] == metrics.top1_accuracy(y, probs)
        assert m["confusion_matrix"] == sk.confusion_matrix(y, pred, labels=list(range(c))).tolist()


def test_ensemble_mean_is_the_mean_of_reordered_members():
    a = np.array([[0.9, 0.1], [0.2, 0.8]])
    b_reversed = np.array([[0.3, 0.7], [0.6, 0.4]])  # columns in the order (y, x)
    orders = metrics.label_orders([["x", "y"], ["y", "x"]], ["a", "b"])
    mean = metrics.mean_probs([a, b_reversed], orders)
    np.testing.assert_allclose(mean, [[0.8, 0.2], [0.3, 0.7]], rtol=1e-6)
