"""Evaluation of a trained model: top-1/top-5, per-class report, confusion matrix, mistakes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecls.config import RunConfig, load_run_config
from edgecls.errors import DataError, EdgeclsError
from edgecls.fsutil import write_json, write_text
from edgecls.train import report
from edgecls.train.model_files import load_keras_model, read_labels
from edgecls.train.pipeline import predict_probs


def evaluate_arrays(model, images, labels, paths, classes, out_dir: Path, *, title: str = "") -> dict:
    """Evaluate on decoded images and write the report files into ``out_dir``; returns the metrics."""
    out_dir = Path(out_dir)
    labels = np.asarray(labels)
    if len(labels) == 0:
        raise DataError("no test images to evaluate on")
    probs = predict_probs(model, images)
    metrics = report.classification_metrics(labels, probs, classes)
    write_text(out_dir / "classification_report.txt", report.format_report(metrics, classes))
    write_json(out_dir / "classification_report.json", metrics)
    report.plot_confusion_matrix(np.asarray(metrics["confusion_matrix"]), classes,
                                 out_dir / "plots" / "confusion_matrix.png", title=title or None)
    metrics["misclassified"] = report.write_misclassified(paths, labels, probs, classes,
                                                          out_dir / "misclassified.csv")
    report.plot_misclassified_gallery(images, paths, labels, probs, classes, out_dir / "plots" / "misclassified.png")
    return {k: metrics[k] for k in ("accuracy", "top5_accuracy", "macro_precision", "macro_recall", "macro_f1",
                                    "weighted_f1", "num_samples", "misclassified")}


def evaluate(run_or_model, data: str | None = None, out: str | None = None, *, verbose: int = 1) -> dict:
    """``edgecls evaluate``: a run folder or a .keras file, on ``data`` or on the run's own test split."""
    from edgecls.train.data_prep import cache_root
    from edgecls.data.decode import decode_split
    from edgecls.data.layout import find_dataset

    target = Path(run_or_model)
    run_dir = target if target.is_dir() else None
    model_path = target / "model.keras" if run_dir else target
    if run_dir and not model_path.is_file():
        raise EdgeclsError(f"not a run folder (no model.keras): {run_dir}")
    model = load_keras_model(model_path)
    classes = read_labels(run_dir or model_path.parent)
    img_size = int(model.input_shape[1])
    config = load_run_config(run_dir) if run_dir and (run_dir / "config.yaml").is_file() else RunConfig()

    if data is None:
        if run_dir is None:
            raise EdgeclsError("give --data DIR to evaluate a model file outside its run folder")
        data, fractions = config.data.path, None
    else:
        fractions = {"train": 0.0, "val": 0.0, "test": 1.0}  # a plain class-folder tree is all test data
    if fractions is None:
        d = config.data
        fractions = {"train": 1.0 - d.val_fraction - d.test_fraction, "val": d.val_fraction, "test": d.test_fraction}
    files = find_dataset(data, fractions=fractions, seed=config.data.seed, cache_root=cache_root(config))
    unknown = [c for c in files.classes if c not in classes]
    if unknown:
        raise DataError(f"class folder(s) {', '.join(unknown)} in {data} are not classes of this model "
                        f"({', '.join(classes)})")
    paths, local_labels = files.splits["test"]
    labels = [classes.index(files.classes[i]) for i in local_labels]
    split = decode_split(paths, labels, img_size, cache_root=cache_root(config), desc="decoding test images",
                         progress=bool(verbose))
    out_dir = Path(out) if out else (run_dir or model_path.parent) / "eval"
    metrics = evaluate_arrays(model, split.images, split.labels, split.paths, classes, out_dir,
                              title=f"{model_path.name} on {data}")
    metrics["skipped_files"] = len(split.bad)
    metrics["model"] = str(model_path)
    metrics["data"] = str(data)
    write_json(out_dir / "metrics.json", metrics)
    return metrics
