"""The one place that names the files of a run folder.

A run folder is what ``edgecls train`` writes and every later stage reads (evaluate, prune,
quantize, export, optimize, bench, report). Spelling ``"model.keras"`` in ten modules lets one of
them drift; here each file has one name, and a module asks ``RunFolder(run).model``.

An evaluation folder (``RUN/eval/``, or any ``--out`` of ``edgecls evaluate``) holds the same
report files as the run itself, so ``RunFolder(run.eval).classification_report_txt`` names them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CONFIG = "config.yaml"
MODEL = "model.keras"
LABELS = "labels.txt"
HISTORY = "history.csv"
STATE = "state.json"
METRICS = "metrics.json"
CLASSIFICATION_REPORT_TXT = "classification_report.txt"
CLASSIFICATION_REPORT_JSON = "classification_report.json"
MISCLASSIFIED = "misclassified.csv"
DATA_SCAN = "data_scan.json"
SKIPPED_FILES = "skipped_files.txt"
REPORT_HTML = "report.html"
PLOTS = "plots"
EXPORTS = "exports"
EVAL = "eval"
EVAL_ENSEMBLE = "eval_ensemble"
CHECKPOINTS = "checkpoints"
TENSORBOARD = "tensorboard"
OPTIMIZE = "optimize"  # inside exports/
BENCH = "bench"  # exports/bench.json, .csv, .png


@dataclass(frozen=True)
class RunFolder:
    """Paths of a run folder's files (nothing is created or checked by naming them)."""

    path: Path

    def __init__(self, path: str | os.PathLike):
        object.__setattr__(self, "path", Path(path))

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    def is_run(self) -> bool:
        """True when training wrote its configuration here (the first file a run gets)."""
        return self.config.is_file()

    # -------------------------------------------------------------- training
    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def model(self) -> Path:
        return self.path / MODEL

    @property
    def labels(self) -> Path:
        return self.path / LABELS

    @property
    def history(self) -> Path:
        return self.path / HISTORY

    @property
    def state(self) -> Path:
        """Training's resumable state (epoch, phase, checkpoint), which --resume reads."""
        return self.path / STATE

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def tensorboard(self) -> Path:
        return self.path / TENSORBOARD

    @property
    def data_scan(self) -> Path:
        return self.path / DATA_SCAN

    @property
    def skipped_files(self) -> Path:
        return self.path / SKIPPED_FILES

    # -------------------------------------------------------------- reports
    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def classification_report_txt(self) -> Path:
        return self.path / CLASSIFICATION_REPORT_TXT

    @property
    def classification_report_json(self) -> Path:
        return self.path / CLASSIFICATION_REPORT_JSON

    @property
    def misclassified(self) -> Path:
        return self.path / MISCLASSIFIED

    @property
    def plots(self) -> Path:
        return self.path / PLOTS

    @property
    def history_png(self) -> Path:
        return self.plots / "history.png"

    @property
    def confusion_matrix_png(self) -> Path:
        return self.plots / "confusion_matrix.png"

    @property
    def misclassified_png(self) -> Path:
        return self.plots / "misclassified.png"

    @property
    def accuracy_comparison_png(self) -> Path:
        """Every ensemble member and the ensemble, with and without TTA (``edgecls evaluate``)."""
        return self.plots / "accuracy_comparison.png"

    @property
    def eval(self) -> Path:
        return self.path / EVAL

    @property
    def eval_ensemble(self) -> Path:
        return self.path / EVAL_ENSEMBLE

    @property
    def report_html(self) -> Path:
        return self.path / REPORT_HTML

    # -------------------------------------------------------------- exports
    @property
    def exports(self) -> Path:
        return self.path / EXPORTS

    def export(self, variant: str, suffix: str) -> Path:
        """``exports/<variant><suffix>``, e.g. ``export("int8", ".tflite")``."""
        return self.exports / f"{variant}{suffix}"

    @property
    def int8_tflite(self) -> Path:
        """The int8 TFLite model ``edgecls quantize --int8`` writes (what bundle ships by default)."""
        return self.export("int8", ".tflite")

    @property
    def optimize(self) -> Path:
        """Where ``edgecls optimize`` keeps its candidates and leaderboard."""
        return self.exports / OPTIMIZE

    @property
    def leaderboard(self) -> Path:
        return self.optimize / "leaderboard.json"

    @property
    def leaderboard_csv(self) -> Path:
        return self.optimize / "leaderboard.csv"

    @property
    def pareto_png(self) -> Path:
        return self.optimize / "pareto.png"

    def best(self, suffix: str) -> Path:
        """The model ``edgecls optimize`` chose, copied to ``exports/best<suffix>`` (.tflite or .onnx)."""
        return self.export("best", suffix)

    @property
    def best_json(self) -> Path:
        """Why the best model was chosen (beside ``best.tflite`` / ``best.onnx``)."""
        return self.export("best", ".json")

    @property
    def pruning_report(self) -> Path:
        """What ``edgecls prune`` measured: sparsity per layer, accuracy, sizes, sparse latency."""
        return self.exports / "pruning_report.json"

    @property
    def bench_json(self) -> Path:
        return self.exports / f"{BENCH}.json"

    @property
    def bench_csv(self) -> Path:
        return self.exports / f"{BENCH}.csv"

    @property
    def bench_png(self) -> Path:
        return self.exports / f"{BENCH}.png"
