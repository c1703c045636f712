"""Evaluation of a model on decoded images: top-1/top-5, per-class report, confusion matrix, mistakes.

The report files a run folder holds after training; ``edgecls.insight.evaluation`` builds the
evaluation of several models (ensembles) and test-time augmentation on top of it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecls.errors import DataError
from edgecls.fsutil import write_json, write_text
from edgecls.metrics import classification_metrics
from edgecls.run_folder import RunFolder
from edgecls.training import evaluation_reports as report
from edgecls.training.pipeline import predict_probs


def evaluate_arrays(model, images, labels, paths, classes, out_dir: Path, *, title: str = "", probs=None) -> dict:
    """Evaluate on decoded images and write the report files into ``out_dir``; returns the metrics.

    ``probs``: predictions made elsewhere (an ensemble, TTA); ``model`` is then not run.
    """
    out_dir = Path(out_dir)
    labels = np.asarray(labels)
    if len(labels) == 0:
        raise DataError("no test images to evaluate on")
    if probs is None:
        probs = predict_probs(model, images)
    folder = RunFolder(out_dir)
    metrics = classification_metrics(labels, probs, classes)
    write_text(folder.classification_report_txt, report.format_report(metrics, classes))
    write_json(folder.classification_report_json, metrics)
    report.plot_confusion_matrix(np.asarray(metrics["confusion_matrix"]), classes, folder.confusion_matrix_png,
                                 title=title or None)
    metrics["misclassified"] = report.write_misclassified(paths, labels, probs, classes, folder.misclassified)
    report.plot_misclassified_gallery(images, paths, labels, probs, classes, folder.misclassified_png)
    return {k: metrics[k] for k in ("accuracy", "top5_accuracy", "macro_precision", "macro_recall", "macro_f1",
                                    "weighted_f1", "num_samples", "misclassified")}
