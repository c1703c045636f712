"""``edgecls predict``: class probabilities for image files and folders, from one or more models.

Records are the same as ``pi_infer.py --json`` writes on the device:
``{"file": ..., "top_k": [{"index": i, "label": ..., "score": p}, ...]}``, best first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgecls.deploy.inputs import expand_inputs, load_images
from edgecls.deploy.runtimes import open_model, runs_as_model
from edgecls.errors import EdgeclsError
from edgecls.metrics import common_rows, label_orders, mean_probs


@dataclass
class ModelPredictions:
    model: str
    runtime: str
    labels: list[str]
    records: list[dict]
    bad: list[tuple[str, str]] = field(default_factory=list)  # (file, reason) skipped


def top_k_records(files, probs: np.ndarray, labels, k: int) -> list[dict]:
    """One record per file; ties go to the lower class index, as arg-max does."""
    k = max(1, min(int(k), probs.shape[1] if probs.ndim == 2 else 1))
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [
        {"file": str(name),
         "top_k": [{"index": int(i), "label": labels[i], "score": float(row[i])} for i in top]}
        for name, row, top in zip(files, probs, order)
    ]


def _each_model(models, files, threads):
    """(runtime, loaded images, probabilities) per model; images are loaded once per input size."""
    loaded_by_size: dict[tuple[int, int], object] = {}
    for model in models:
        runtime = open_model(model, threads=threads)
        size = tuple(runtime.input_size)
        if size not in loaded_by_size:
            loaded_by_size[size] = load_images(files, size)
        loaded = loaded_by_size[size]
        if not loaded.files:
            first, reason = loaded.bad[0]
            raise EdgeclsError(f"no usable image: {first}: {reason}")
        probs = runtime.predict(loaded.images)
        labels = runtime.labels
        if len(labels) != probs.shape[1]:
            raise EdgeclsError(f"{model} has {probs.shape[1]} outputs but its sidecar lists {len(labels)} labels")
        yield runtime, loaded, probs


def _check_top_k(top_k: int) -> None:
    if top_k < 1:
        raise EdgeclsError(f"--top-k must be at least 1, got {top_k}")


def predict_files(models, inputs, *, top_k: int = 5, threads: int = 1) -> list[ModelPredictions]:
    """Predict every image of ``inputs`` (files and folders) with each model of ``models``."""
    _check_top_k(top_k)
    files = expand_inputs(inputs)
    return [ModelPredictions(str(model), runtime.name, runtime.labels,
                             top_k_records(loaded.files, probs, runtime.labels, top_k), list(loaded.bad))
            for model, (runtime, loaded, probs) in zip(models, _each_model(models, files, threads))]


def predict_ensemble(models, inputs, *, top_k: int = 5, threads: int = 1) -> ModelPredictions:
    """One prediction per image from several models: the mean of their probabilities.

    Members may differ in format and input size (each gets its own resize); they must share labels.
    """
    _check_top_k(top_k)
    files = expand_inputs(inputs)
    outputs = list(_each_model(models, files, threads))
    runtimes = [runtime for runtime, _, _ in outputs]
    orders = label_orders([r.labels for r in runtimes], [str(m) for m in models])
    rows = common_rows([loaded.files for _, loaded, _ in outputs])
    probs = mean_probs([p[member_rows] for (_, _, p), member_rows in zip(outputs, rows)], orders)
    kept = [outputs[0][1].files[i] for i in rows[0]]
    bad = sorted({item for _, loaded, _ in outputs for item in loaded.bad})
    labels = runtimes[0].labels
    return ModelPredictions(" + ".join(str(m) for m in models), "+".join(r.name for r in runtimes), labels,
                            top_k_records(kept, probs, labels, top_k), bad)


def split_models(paths) -> tuple[list, list]:
    """Leading model files (by suffix, edgecls.formats) and the image inputs after them."""
    paths = list(paths)
    count = 0
    while count < len(paths) and runs_as_model(paths[count]):
        count += 1
    return paths[:count], paths[count:]


def format_records(records, *, digits: int = 3) -> list[str]:
    """Human-readable lines: ``file: label 0.912, other 0.051``."""
    return [f"{r['file']}: " + ", ".join(f"{t['label']} {t['score']:.{digits}f}" for t in r["top_k"])
            for r in records]
