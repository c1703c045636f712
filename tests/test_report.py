"""Checks for edgecls.training.evaluation_reports against hand-computed values and real output files."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from edgecls.metrics import classification_metrics
from edgecls.training import evaluation_reports as report
from edgecls.training.evaluation_reports import (
    format_report,
    plot_confusion_matrix,
    plot_history,
    plot_misclassified_gallery,
    write_misclassified,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Four classes; "fish" never occurs in y_true but is predicted once.
NAMES = ["cat", "dog", "bird", "fish"]
Y_TRUE = np.array([0, 0, 0, 1, 1, 2, 2, 2])
Y_PRED = np.array([0, 0, 1, 1, 3, 2, 2, 0])
# Winning score per sample, distinct so the order of mistakes is unambiguous.
CONF = np.array([0.90, 0.80, 0.70, 0.60, 0.95, 0.85, 0.55, 0.65])


def _probs(pred, conf, n_classes):
    """Scores whose argmax is ``pred`` with value ``conf``; the rest share the remainder."""
    p = np.empty((len(pred), n_classes))
    for i, (k, c) in enumerate(zip(pred, conf)):
        p[i] = (1.0 - c) / (n_classes - 1)
        p[i, k] = c
    return p


PROBS = _probs(Y_PRED, CONF, len(NAMES))


def _assert_png(path, min_side=200):
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG"
        w, h = im.size
    assert min_side <= w <= 6000 and min_side <= h <= 6000
    return w, h


def _only_file(folder, name):
    assert sorted(p.name for p in folder.iterdir()) == [name]


# --------------------------------------------------------------------------- metrics


def test_metrics_match_hand_computed_values():
    m = classification_metrics(Y_TRUE, PROBS, NAMES)

    assert m["num_samples"] == 8
    assert m["accuracy"] == pytest.approx(5 / 8)
    assert m["top5_accuracy"] is None  # only 4 classes

    expected = {
        "cat": (2 / 3, 2 / 3, 2 / 3, 3),
        "dog": (1 / 2, 1 / 2, 1 / 2, 2),
        "bird": (1.0, 2 / 3, 0.8, 3),
        "fish": (0.0, 0.0, 0.0, 0),  # predicted once, wrongly; no samples
    }
    assert list(m["per_class"]) == NAMES
    for name, (p, r, f, s) in expected.items():
        pc = m["per_class"][name]
        assert pc["precision"] == pytest.approx(p)
        assert pc["recall"] == pytest.approx(r)
        assert pc["f1"] == pytest.approx(f)
        assert pc["support"] == s

    # fish is predicted, so it counts in the macro averages.
    assert m["macro_precision"] == pytest.approx(13 / 24)
    assert m["macro_recall"] == pytest.approx(11 / 24)
    assert m["macro_f1"] == pytest.approx(59 / 120)
    assert m["weighted_f1"] == pytest.approx(5.4 / 8)

    assert m["confusion_matrix"] == [
        [2, 1, 0, 0],
        [0, 1, 0, 1],
        [1, 0, 2, 0],
        [0, 0, 0, 0],
    ]


def test_metrics_are_plain_json_types():
    m = classification_metrics(Y_TRUE, PROBS, NAMES)
    assert json.loads(json.dumps(m)) == m
    assert type(m["accuracy"]) is float
    assert type(m["num_samples"]) is int
    assert type(m["per_class"]["cat"]["support"]) is int
    assert all(type(v) is int for row in m["confusion_matrix"] for v in row)


def test_class_never_seen_nor_predicted_is_kept_out_of_macro_average():
    names = ["a", "b", "c"]
    y = [0, 0, 1, 1]
    probs = _probs([0, 1, 1, 1], [0.9] * 4, 3)
    m = classification_metrics(y, probs, names)
    # a: P=1, R=1/2, F1=2/3; b: P=2/3, R=1, F1=0.8; c: absent everywhere.
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    assert m["macro_precision"] == pytest.approx((1 + 2 / 3) / 2)
    assert m["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [0, 0, 0]]


def test_top5_accuracy_on_seven_classes():
    names = [f"c{i}" for i in range(7)]
    scores = np.array([0.30, 0.25, 0.15, 0.12, 0.08, 0.06, 0.04])
    y = np.array([3, 0, 6, 2])
    rank_of_true = [1, 3, 5, 6]  # 1 = best; only the last sample misses the top 5
    rng = np.random.default_rng(0)
    probs = np.empty((4, 7))
    for i, (label, rank) in enumerate(zip(y, rank_of_true)):
        others = rng.permutation([k for k in range(7) if k != label]).tolist()
        order = others[: rank - 1] + [label] + others[rank - 1 :]
        probs[i, order] = scores
    m = classification_metrics(y, probs, names)
    assert m["accuracy"] == pytest.approx(1 / 4)
    assert m["top5_accuracy"] == pytest.approx(3 / 4)


def test_top5_tie_break_agrees_with_argmax():
    # All scores equal: argmax picks class 0, so top-1 is right only for label 0 and
    # top-5 covers labels 0..4.
    names = [f"c{i}" for i in range(7)]
    y = np.arange(7)
    m = classification_metrics(y, np.full((7, 7), 1 / 7), names)
    assert m["accuracy"] == pytest.approx(1 / 7)
    assert m["top5_accuracy"] == pytest.approx(5 / 7)


@pytest.mark.parametrize(
    "y, probs, names",
    [
        ([], np.zeros((0, 3)), ["a", "b", "c"]),  # no samples
        ([0, 1], np.zeros((3, 3)), ["a", "b", "c"]),  # row count mismatch
        ([0, 1], np.zeros((2, 2)), ["a", "b", "c"]),  # column count mismatch
        ([0, 3], np.zeros((2, 3)), ["a", "b", "c"]),  # label out of range
        ([0, 0.5], np.zeros((2, 3)), ["a", "b", "c"]),  # not a class index
        ([0, 1], np.zeros((2, 3)), ["a", "b", "a"]),  # duplicate names
    ],
)
def test_metrics_reject_bad_input(y, probs, names):
    with pytest.raises(ValueError):
        classification_metrics(y, probs, names)


def test_format_report_contains_the_numbers():
    m = classification_metrics(Y_TRUE, PROBS, NAMES)
    text = format_report(m, NAMES)
    lines = text.splitlines()

    rows = {line.split()[0]: line for line in lines if line and line.split()[0] in NAMES}
    assert set(rows) == set(NAMES)
    assert rows["cat"].split()[1:] == ["0.6667", "0.6667", "0.6667", "3"]
    assert rows["bird"].split()[1:] == ["1.0000", "0.6667", "0.8000", "3"]
    assert rows["fish"].split()[1:] == ["0.0000", "0.0000", "0.0000", "0"]
    # Columns line up: every class row and the header end at the same column.
    header = next(line for line in lines if "precision" in line)
    assert len({len(header)} | {len(r) for r in rows.values()}) == 1

    macro = next(line for line in lines if line.startswith("macro avg"))
    assert macro.split()[2:] == [f"{13 / 24:.4f}", f"{11 / 24:.4f}", f"{59 / 120:.4f}", "8"]
    weighted = next(line for line in lines if line.startswith("weighted avg"))
    # Support-weighted precision (2/3*3 + 1/2*2 + 1*3)/8 and recall = accuracy.
    assert weighted.split()[2:] == [f"{6 / 8:.4f}", "0.6250", "0.6750", "8"]
    accuracy = next(line for line in lines if line.startswith("accuracy"))
    assert accuracy.split()[1:] == ["0.6250", "8"]
    assert "top-5" not in text


def test_format_report_top5_line_and_json_round_trip():
    names = [f"class_{i}" for i in range(6)]
    y = np.array([0, 1, 2, 3, 4, 5])
    probs = _probs([0, 1, 2, 3, 4, 0], [0.8] * 6, 6)
    m = json.loads(json.dumps(classification_metrics(y, probs, names)))
    text = format_report(m, names)
    top5 = next(line for line in text.splitlines() if line.startswith("top-5 accuracy"))
    assert top5.split()[2:] == [f"{m['top5_accuracy']:.4f}", "6"]
    assert f"{5 / 6:.4f}" in text


# --------------------------------------------------------------------------- plots


def test_confusion_matrix_png(tmp_path):
    cm = classification_metrics(Y_TRUE, PROBS, NAMES)["confusion_matrix"]
    out = plot_confusion_matrix(cm, NAMES, tmp_path / "cm.png")
    assert out == tmp_path / "cm.png"
    _assert_png(out)
    _only_file(tmp_path, "cm.png")

    counts = plot_confusion_matrix(cm, NAMES, tmp_path / "counts.png", normalize=False, title="Counts")
    _assert_png(counts)


def test_confusion_matrix_grows_with_classes(tmp_path):
    rng = np.random.default_rng(1)
    small = plot_confusion_matrix(np.eye(4, dtype=int) * 5, NAMES, tmp_path / "small.png")
    names = [f"a_rather_long_class_name_{i:03d}" for i in range(100)]
    cm = rng.integers(0, 5, size=(100, 100)) + np.eye(100, dtype=int) * 40
    big = plot_confusion_matrix(cm, names, tmp_path / "big.png")
    w_small, h_small = _assert_png(small)
    w_big, h_big = _assert_png(big)
    assert w_big > 4 * w_small and h_big > 4 * h_small


def test_confusion_matrix_rejects_mismatched_names(tmp_path):
    with pytest.raises(ValueError):
        plot_confusion_matrix(np.zeros((3, 3)), NAMES, tmp_path / "cm.png")
    assert list(tmp_path.iterdir()) == []


def test_failed_plot_keeps_previous_file_and_leaves_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "cm.png"
    target.write_bytes(b"previous")

    def broken_savefig(self, *args, **kwargs):
        with open(args[0], "wb") as fh:  # simulate a half-written file before the failure
            fh.write(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(report.Figure, "savefig", broken_savefig)
    with pytest.raises(RuntimeError):
        plot_confusion_matrix(np.eye(4), NAMES, target)
    assert target.read_bytes() == b"previous"
    _only_file(tmp_path, "cm.png")


def _history_via_csv(tmp_path, rows, fieldnames):
    src = tmp_path / "history.csv"
    with open(src, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)
    with open(src, newline="") as fh:
        history = list(csv.DictReader(fh))
    src.unlink()
    return history


def test_history_from_csv_with_phase_change(tmp_path):
    rows = []
    for e in range(6):
        phase = "head" if e < 3 else "finetune"
        rows.append({
            "epoch": e,
            "phase": phase,
            "loss": 1.0 / (e + 1),
            "accuracy": 0.5 + 0.05 * e,
            "val_loss": "" if e == 1 else 1.2 / (e + 1),  # an empty cell must not break it
            "val_accuracy": 0.45 + 0.05 * e,
            "lr": 1e-3 if phase == "head" else 1e-5,
        })
    history = _history_via_csv(tmp_path, rows, list(rows[0]))
    assert isinstance(history[0]["loss"], str)

    out = plot_history(history, tmp_path / "history.png")
    w3, h3 = _assert_png(out)
    _only_file(tmp_path, "history.png")

    x = report._epoch_axis(history)
    assert report._phase_changes(history, x) == [(2.5, "head", "finetune")]

    # Without a learning-rate column there is one panel fewer, so the figure is shorter.
    no_lr = [{k: v for k, v in r.items() if k != "lr"} for r in history]
    w2, h2 = _assert_png(plot_history(no_lr, tmp_path / "no_lr.png"))
    assert w2 == w3 and h2 < h3


def test_history_epochs_restarting_per_phase_use_row_order():
    history = [
        {"epoch": "0", "phase": "head", "loss": "1.0"},
        {"epoch": "1", "phase": "head", "loss": "0.8"},
        {"epoch": "0", "phase": "finetune", "loss": "0.7"},
        {"epoch": "1", "phase": "finetune", "loss": "0.6"},
    ]
    x = report._epoch_axis(history)
    assert x.tolist() == [0, 1, 2, 3]
    assert report._phase_changes(history, x) == [(1.5, "head", "finetune")]


def test_history_with_missing_keys_and_floats(tmp_path):
    history = [{"loss": 1.0}, {"loss": 0.7, "val_loss": 0.9}, {"loss": 0.5, "val_loss": None}]
    _assert_png(plot_history(history, tmp_path / "h.png"))
    with pytest.raises(ValueError):
        plot_history([], tmp_path / "empty.png")
    _only_file(tmp_path, "h.png")


# --------------------------------------------------------------------------- mistakes


def test_misclassified_csv_sorted_by_confidence(tmp_path):
    paths = [f"data/img_{i}.jpg" for i in range(len(Y_TRUE))]
    out = tmp_path / "misclassified.csv"
    count = write_misclassified(paths, Y_TRUE, PROBS, NAMES, out)
    _only_file(tmp_path, "misclassified.csv")

    with open(out, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == report.MISCLASSIFIED_COLUMNS
        rows = list(reader)
    # Mistakes are samples 2 (0.70), 4 (0.95) and 7 (0.65).
    assert count == 3 == len(rows)
    assert [r["file"] for r in rows] == ["data/img_4.jpg", "data/img_2.jpg", "data/img_7.jpg"]
    assert [(r["true_label"], r["predicted_label"]) for r in rows] == [
        ("dog", "fish"), ("cat", "dog"), ("bird", "cat"),
    ]
    conf = [float(r["confidence"]) for r in rows]
    assert conf == sorted(conf, reverse=True) == pytest.approx([0.95, 0.70, 0.65])
    # The true class got an equal share of what the winner left.
    assert [float(r["true_label_score"]) for r in rows] == pytest.approx([0.05 / 3, 0.30 / 3, 0.35 / 3], abs=1e-6)


def test_misclassified_csv_when_all_correct(tmp_path):
    out = tmp_path / "m.csv"
    probs = _probs(Y_TRUE, [0.9] * len(Y_TRUE), 4)
    assert write_misclassified(["x"] * len(Y_TRUE), Y_TRUE, probs, NAMES, out) == 0
    assert out.read_text().strip() == ",".join(report.MISCLASSIFIED_COLUMNS)


class _RecordingImages:
    """Index-only image source that records which samples the gallery fetched."""

    def __init__(self, n, size=32):
        rng = np.random.default_rng(2)
        self._data = rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
        self.fetched = []

    def __getitem__(self, i):
        self.fetched.append(i)
        return self._data[i]


def test_gallery_shows_most_confident_mistakes(tmp_path):
    images = _RecordingImages(len(Y_TRUE))
    paths = [f"img_{i}.jpg" for i in range(len(Y_TRUE))]
    out = plot_misclassified_gallery(images, paths, Y_TRUE, PROBS, NAMES, tmp_path / "g.png", max_images=2)
    assert out == tmp_path / "g.png"
    assert images.fetched == [4, 2]
    _assert_png(out)
    _only_file(tmp_path, "g.png")

    all_mistakes = plot_misclassified_gallery(
        images._data, paths, Y_TRUE, PROBS, NAMES, tmp_path / "all.png"
    )
    _assert_png(all_mistakes)


def test_gallery_none_when_all_correct(tmp_path):
    probs = _probs(Y_TRUE, [0.9] * len(Y_TRUE), 4)
    images = _RecordingImages(len(Y_TRUE))
    result = plot_misclassified_gallery(images, ["x"] * len(Y_TRUE), Y_TRUE, probs, NAMES, tmp_path / "g.png")
    assert result is None
    assert images.fetched == []
    assert list(tmp_path.iterdir()) == []


def test_module_imports_neither_tensorflow_nor_pyplot():
    code = (
        "import sys, edgecls.training.evaluation_reports; "
        "bad = [m for m in ('tensorflow', 'matplotlib.pyplot') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
