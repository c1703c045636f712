"""Accuracy side by side: each model and the ensemble, without and with test-time augmentation."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from edgecls.metrics import check_inputs, top1_accuracy, top_k_or_none
from edgecls.training.evaluation_reports import save_figure


def accuracy_row(name: str, kind: str, y, classes, plain, tta=None) -> dict:
    """One row: top-1/top-5 of ``plain`` probabilities and, given ``tta``, of the averaged views."""
    row = {"name": name, "kind": kind}
    for prefix, probs in (("", plain), ("tta_", tta)):
        if probs is not None:
            labels, scores = check_inputs(y, probs, classes, allow_empty=False)
            row[f"{prefix}accuracy"] = top1_accuracy(labels, scores)
            row[f"{prefix}top5_accuracy"] = top_k_or_none(labels, scores)
    if tta is not None:
        row["tta_gain"] = row["tta_accuracy"] - row["accuracy"]
    return row


def comparison_table(rows, *, tta_count: int = 0, title: str | None = None):
    """A rich table: name, top-1, and with TTA: top-1 under TTA and the gain, in points."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("model")
    table.add_column("top-1", justify="right")
    if tta_count:
        table.add_column(f"top-1 TTA×{tta_count}", justify="right")
        table.add_column("TTA gain", justify="right")
    for row in rows:
        cells = [row["name"], f"{row['accuracy']:.4f}"]
        if tta_count:
            cells += [f"{row['tta_accuracy']:.4f}", f"{100 * row['tta_gain']:+.2f} pt"]
        table.add_row(*cells, style="bold" if row["kind"] == "ensemble" else None)
    return table


def plot_comparison(rows, path: str | os.PathLike, *, tta_count: int = 0, title: str = "") -> Path:
    """Horizontal bars of top-1 per row (and under TTA), values written at the bar ends.

    The axis is zoomed on the values: the differences of interest are a point or two, invisible
    on a 0–1 axis. The axis label says so, so nobody reads bar lengths as ratios.
    """
    series = [("top-1", "accuracy", "tab:blue")]
    if tta_count:
        series.append((f"top-1 with TTA×{tta_count}", "tta_accuracy", "tab:orange"))
    values = np.array([[row[key] for _, key, _ in series] for row in rows], dtype=float)
    low, high = float(values.min()), float(values.max())
    margin = max(0.02, 0.15 * (high - low))
    height = 0.8 / len(series)
    fig = Figure(figsize=(7.5, 1.0 + 0.55 * len(rows) * len(series)), layout="constrained")
    ax = fig.add_subplot()
    positions = np.arange(len(rows))[::-1]
    for k, (label, _, colour) in enumerate(series):
        offsets = positions + (len(series) - 1 - 2 * k) * height / 2
        ax.barh(offsets, values[:, k], height=height * 0.9, color=colour, label=label)
        for y, value in zip(offsets, values[:, k]):
            ax.text(value, y, f" {value:.4f}", va="center", fontsize=8)
    ax.set_yticks(positions)
    ax.set_yticklabels([row["name"] for row in rows])
    ax.set_xlim(max(0.0, low - margin), min(1.0, high + margin) + margin)
    ax.set_xlabel("top-1 accuracy (axis zoomed, not from 0)")
    ax.grid(True, axis="x", alpha=0.3)
    if len(series) > 1:
        ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title or "Accuracy side by side", fontsize=10)
    return save_figure(fig, path, dpi=100)
