"""Evaluation reports: a text report, plots and the list of mistakes (the metrics: edgecls.metrics).

Everything here works on plain arrays (labels and class probabilities), so it serves the
float Keras model and the int8 TFLite model alike and never needs TensorFlow.

Plots use ``matplotlib.figure.Figure`` with an Agg canvas instead of pyplot: pyplot keeps
global state (the current figure, the chosen backend) that is not thread-safe and may try to
open a window, and this module must be safe to call from a training callback or a worker.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.transforms import blended_transform_factory

from edgecls.fsutil import atomic_path
from edgecls.metrics import check_class_names, check_inputs

__all__ = [
    "format_report",
    "plot_confusion_matrix",
    "plot_history",
    "write_misclassified",
    "plot_misclassified_gallery",
    "save_figure",
]

# Above this many classes, numbers in the cells become unreadable and only slow the render.
_ANNOTATE_MAX_CLASSES = 20
MISCLASSIFIED_COLUMNS = ("file", "true_label", "predicted_label", "confidence", "true_label_score")


def format_report(metrics: Mapping[str, Any], class_names: Sequence[str]) -> str:
    """Plain-text report in aligned columns, from the dict of :func:`edgecls.metrics.classification_metrics`.

    Works as well on that dict after a JSON round trip, e.g. read back from ``metrics.json``.
    """
    per_class = metrics["per_class"]
    names = [str(n) for n in class_names]
    summary = ["macro avg", "weighted avg", "accuracy", "top-5 accuracy"]
    w = max(len(s) for s in names + summary)
    col = 9

    def row(label: str, p, r, f, s) -> str:
        cells = [f"{v:>{col}.4f}" if v is not None else " " * col for v in (p, r, f)]
        return f"{label:<{w}}  " + "  ".join(cells) + f"  {s:>{col}d}"

    lines = [f"{'':<{w}}  " + "  ".join(f"{h:>{col}}" for h in ("precision", "recall", "f1-score", "support")), ""]
    for name in names:
        pc = per_class[name]
        lines.append(row(name, pc["precision"], pc["recall"], pc["f1"], int(pc["support"])))

    n = int(metrics["num_samples"])
    # Only the weighted F1 is stored; weighted precision and recall follow from the supports.
    supports = np.array([per_class[nm]["support"] for nm in names], dtype=float)
    total = supports.sum()
    if total > 0:
        w_p = float(np.dot(supports, [per_class[nm]["precision"] for nm in names]) / total)
        w_r = float(np.dot(supports, [per_class[nm]["recall"] for nm in names]) / total)
    else:
        w_p = w_r = 0.0
    lines += [
        "",
        row("macro avg", metrics["macro_precision"], metrics["macro_recall"], metrics["macro_f1"], n),
        row("weighted avg", w_p, w_r, metrics["weighted_f1"], n),
        "",
        row("accuracy", None, None, metrics["accuracy"], n),
    ]
    if metrics.get("top5_accuracy") is not None:
        lines.append(row("top-5 accuracy", None, None, metrics["top5_accuracy"], n))
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- plots


def plot_confusion_matrix(
    cm,
    class_names: Sequence[str],
    path: str | os.PathLike,
    *,
    normalize: bool = True,
    title: str | None = None,
) -> Path:
    """Draw the confusion matrix (rows = true, columns = predicted) to a PNG.

    With ``normalize`` the colours show each row as a fraction of its true class (recall on
    the diagonal), so rare classes are as visible as common ones; the numbers written in the
    cells stay raw counts so the reader also sees how much evidence each fraction rests on.
    """
    names = [str(n) for n in class_names]
    counts = np.asarray(cm, dtype=np.float64)
    c = len(names)
    if c == 0 or counts.shape != (c, c):
        raise ValueError(f"confusion matrix of shape {counts.shape} does not match {c} class names")

    if normalize:
        row_sums = counts.sum(axis=1, keepdims=True)
        shown = np.divide(counts, row_sums, out=np.zeros_like(counts), where=row_sums > 0)
        vmax = 1.0
    else:
        shown = counts
        vmax = max(float(counts.max()), 1.0)

    # Cell size shrinks slowly as classes are added, and the figure grows to keep ~100
    # classes legible; past the cap the cells simply get smaller.
    side = min(max(5.0, 0.3 * c + 2.5), 34.0)
    tick_size = 10.0 if c <= _ANNOTATE_MAX_CLASSES else max(5.0, 10.0 - (c - _ANNOTATE_MAX_CLASSES) / 16.0)
    fig = Figure(figsize=(side + 1.2, side), layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(shown, cmap="Blues", vmin=0.0, vmax=vmax, interpolation="nearest")
    fig.colorbar(im, ax=ax, shrink=0.8, label="fraction of true class" if normalize else "count")

    ticks = np.arange(c)
    short = [_shorten(n, 24) for n in names]
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    if c <= 40:
        ax.set_xticklabels(short, rotation=45, ha="right", rotation_mode="anchor", fontsize=tick_size)
    else:
        ax.set_xticklabels(short, rotation=90, fontsize=tick_size)
    ax.set_yticklabels(short, fontsize=tick_size)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title is None:
        title = "Confusion matrix (rows normalised: recall)" if normalize else "Confusion matrix (counts)"
    ax.set_title(title)

    if c <= _ANNOTATE_MAX_CLASSES:
        integral = np.all(counts == np.round(counts))
        text_size = 9 if c <= 10 else 7
        for i in range(c):
            for j in range(c):
                # Zeros are left blank: the pale cell already says it, and 0s everywhere
                # make the real confusions harder to spot.
                if counts[i, j] == 0:
                    continue
                label = f"{int(counts[i, j])}" if integral else f"{counts[i, j]:.2f}"
                dark = shown[i, j] > 0.5 * vmax
                ax.text(j, i, label, ha="center", va="center", fontsize=text_size,
                        color="white" if dark else "black")

    return save_figure(fig, path, dpi=120 if c <= _ANNOTATE_MAX_CLASSES else 100)


def plot_history(history: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Plot loss, accuracy and (when logged) the learning rate per epoch to a PNG.

    ``history`` is one dict per epoch, typically the rows of ``history.csv`` read back with
    ``csv.DictReader``, so values may be strings and columns may be empty or missing.
    A dashed vertical line marks each change of ``phase`` (e.g. head training -> fine-tuning).
    """
    rows = list(history)
    if not rows:
        raise ValueError("history is empty: nothing to plot")
    x = _epoch_axis(rows)

    lr_key = next((k for k in ("lr", "learning_rate") if _has_values(rows, k)), None)
    panels = [("loss", "loss", "val_loss"), ("accuracy", "accuracy", "val_accuracy")]
    n_panels = len(panels) + (1 if lr_key else 0)

    fig = Figure(figsize=(8.0, 2.8 * n_panels), layout="constrained")
    axes = fig.subplots(n_panels, 1, sharex=True, squeeze=False)[:, 0]
    marker = "o" if len(rows) <= 60 else None

    for ax, (label, train_key, val_key) in zip(axes, panels):
        drawn = False
        for key, name in ((train_key, "train"), (val_key, "val")):
            if _has_values(rows, key):
                ax.plot(x, _column(rows, key), marker=marker, markersize=3, label=name)
                drawn = True
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        if drawn:
            ax.legend(loc="best", fontsize=8)
        else:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes, color="grey")

    if lr_key:
        ax = axes[-1]
        lr = _column(rows, lr_key)
        ax.plot(x, lr, marker=marker, markersize=3, color="tab:green")
        finite = lr[np.isfinite(lr)]
        # A log axis would drop a zero or negative rate (end of a decay) without a trace.
        if finite.size and np.all(finite > 0):
            ax.set_yscale("log")
        ax.set_ylabel("learning rate")
        ax.grid(True, which="both", alpha=0.3)

    for pos, old, new in _phase_changes(rows, x):
        for ax in axes:
            ax.axvline(pos, color="grey", linestyle="--", linewidth=1)
        top = axes[0]
        top.text(pos, 1.0, f" {old} → {new}", transform=blended_transform_factory(top.transData, top.transAxes),
                 ha="left", va="bottom", fontsize=8, color="dimgrey", clip_on=False)

    axes[-1].set_xlabel("epoch")
    return save_figure(fig, path, dpi=100)


def _to_float(value) -> float:
    if value is None:
        return math.nan
    if isinstance(value, str):
        value = value.strip()
        if not value:
            return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _column(rows: Sequence[Mapping[str, Any]], key: str) -> np.ndarray:
    return np.array([_to_float(r.get(key)) for r in rows], dtype=np.float64)


def _has_values(rows: Sequence[Mapping[str, Any]], key: str) -> bool:
    return bool(np.isfinite(_column(rows, key)).any())


def _epoch_axis(rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
    epochs = _column(rows, "epoch")
    # The second phase of transfer learning may restart its epoch count (or the column may be
    # missing); then the row order is the only trustworthy timeline.
    if np.all(np.isfinite(epochs)) and np.all(np.diff(epochs) > 0):
        return epochs
    return np.arange(len(rows), dtype=np.float64)


def _phase_changes(rows: Sequence[Mapping[str, Any]], x: np.ndarray) -> list[tuple[float, str, str]]:
    """(x position, old phase, new phase) for each change; rows without a phase are skipped."""
    changes = []
    last_phase, last_x = None, None
    for row, xi in zip(rows, x):
        phase = row.get("phase")
        phase = str(phase).strip() if phase is not None else ""
        if not phase:
            continue
        if last_phase is not None and phase != last_phase:
            changes.append(((last_x + float(xi)) / 2.0, last_phase, phase))
        last_phase, last_x = phase, float(xi)
    return changes


# --------------------------------------------------------------------------- mistakes


def _checked_mistakes(paths, y_true, probs, class_names):
    """Validated inputs of the two mistake reports, with the mistakes ranked most confident first."""
    names = check_class_names(class_names)
    y, p = check_inputs(y_true, probs, names, allow_empty=True)
    paths = list(paths)
    if len(paths) != len(y):
        raise ValueError(f"{len(paths)} paths for {len(y)} samples")
    order, pred = _ranked_mistakes(y, p)
    return names, y, p, paths, order, pred


def write_misclassified(paths: Sequence, y_true, probs, class_names: Sequence[str], path_csv) -> int:
    """Write every misclassified sample to a CSV, most confidently wrong first; return the count.

    Confident mistakes come first because they are the likeliest to be label errors in the
    dataset rather than genuinely hard images.
    """
    names, y, p, paths, order, pred = _checked_mistakes(paths, y_true, probs, class_names)

    with atomic_path(path_csv) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(MISCLASSIFIED_COLUMNS)
            for i in order:
                writer.writerow([
                    os.fspath(paths[i]) if isinstance(paths[i], os.PathLike) else str(paths[i]),
                    names[y[i]],
                    names[pred[i]],
                    f"{p[i, pred[i]]:.6f}",
                    f"{p[i, y[i]]:.6f}",
                ])
    return len(order)


def plot_misclassified_gallery(
    images,
    paths: Sequence,
    y_true,
    probs,
    class_names: Sequence[str],
    path: str | os.PathLike,
    *,
    max_images: int = 25,
) -> Path | None:
    """Grid of the most confidently wrong images, each titled ``true → predicted (p=…)``.

    ``images`` only needs integer indexing (an array, a memmap, a lazy loader), and only the
    shown images are fetched. Returns None and writes nothing when there is no mistake.
    """
    if max_images < 1:
        raise ValueError("max_images must be at least 1")
    names, y, p, paths, order, pred = _checked_mistakes(paths, y_true, probs, class_names)
    if len(order) == 0:
        return None
    chosen = order[:max_images]

    n = len(chosen)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(2.4 * cols, 2.7 * rows), layout="constrained")
    for k, i in enumerate(chosen):
        ax = fig.add_subplot(rows, cols, k + 1)
        img = np.asarray(images[int(i)])
        if img.ndim == 3 and img.shape[-1] == 1:
            img = img[..., 0]
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, interpolation="nearest")
        ax.set_title(
            f"{_shorten(names[y[i]], 16)} → {_shorten(names[pred[i]], 16)} (p={p[i, pred[i]]:.2f})",
            fontsize=8,
        )
        # Ticks off but axes kept, so the file name can sit underneath as an x label.
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(_shorten(Path(str(paths[i])).name, 30), fontsize=6)
    return save_figure(fig, path, dpi=100)


def _ranked_mistakes(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = p.argmax(axis=1) if len(y) else np.zeros(0, dtype=np.int64)
    wrong = np.flatnonzero(pred != y)
    conf = p[wrong, pred[wrong]]
    # Stable, so equally confident mistakes keep the dataset's order and reruns match.
    return wrong[np.argsort(-conf, kind="stable")], pred


# --------------------------------------------------------------------------- helpers


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def save_figure(fig: Figure, path: str | os.PathLike, *, dpi: int) -> Path:
    """Render ``fig`` to ``path`` atomically (the format from the suffix, PNG without one)."""
    path = Path(path)
    FigureCanvasAgg(fig)
    # The temporary file ends in ".tmp<suffix>", and a target without a suffix would leave
    # matplotlib guessing from ".tmp", so the format is always passed explicitly.
    fmt = path.suffix.lstrip(".").lower() or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi)
    return path
