"""The report's sections about data, training and test results, each built from the run's files.

Each function returns the section's template context, or None when the run has none of its
files, so the page simply leaves the section out.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from pathlib import Path

from PIL import Image

from edgecls.data.images import BadImage, load_image_array
from edgecls.html_report.reading import (
    Notes,
    as_float,
    image_data_uri,
    mapping,
    pil_data_uri,
    read_csv_rows,
    read_json,
    read_text,
)
from edgecls.run_folder import RunFolder

SPLIT_ORDER = ("train", "val", "test")
MAX_SKIPPED_ROWS = 200
MAX_MISTAKES = 12
# Confusion matrices beyond this many classes stay a picture: as a table they would not fit.
MAX_MATRIX_CLASSES = 30
THUMB_SIDE = 112  # px on the page: small inputs are enlarged by whole pixels, large ones reduced


def data_section(run: RunFolder, data_root: str | None, notes: Notes) -> dict | None:
    """Images per class and split, and every skipped file with its reason."""
    scan = read_json(run.data_scan, notes)
    if scan is not None and not isinstance(scan, dict):
        notes.add(run.data_scan, "not a data scan (expected a JSON object)")
        scan = None
    skipped_text = read_text(run.skipped_files, notes)
    if scan is None and skipped_text is None:
        return None

    raw_splits = mapping(scan, "splits")
    splits = _ordered(list(raw_splits))
    split_info = {name: mapping(raw_splits, name) for name in splits}
    classes: list[str] = []
    for name in splits:
        for cls in mapping(split_info[name], "per_class"):
            if cls not in classes:
                classes.append(cls)
    rows = []
    for cls in classes:
        counts = [mapping(split_info[name], "per_class").get(cls) for name in splits]
        rows.append({"name": cls, "counts": counts, "total": int(sum(as_float(c) or 0 for c in counts))})
    largest = max((row["total"] for row in rows), default=0) or 1
    for row in rows:
        row["share"] = round(100 * row["total"] / largest, 1)
    kept = [split_info[name].get("kept") for name in splits]
    skipped_counts = [split_info[name].get("skipped") for name in splits]

    skipped = _skipped_from_scan(scan) if scan is not None else _skipped_from_text(skipped_text or "")
    for item in skipped:
        item["path"] = _relative_to(item["path"], data_root)
    kinds = Counter(item["reason"].split(":", 1)[0].strip() for item in skipped)
    balance = None
    if rows:
        totals = [r["total"] for r in rows]
        balance = {"smallest": min(totals), "largest": max(totals),
                   "smallest_class": rows[totals.index(min(totals))]["name"],
                   "largest_class": rows[totals.index(max(totals))]["name"]}
    return {
        "splits": splits,
        "rows": rows,
        "kept": kept,
        "kept_total": int(sum(as_float(k) or 0 for k in kept)),
        "skipped_counts": skipped_counts,
        "skipped": skipped[:MAX_SKIPPED_ROWS],
        "skipped_total": len(skipped),
        "skipped_more": max(0, len(skipped) - MAX_SKIPPED_ROWS),
        "skipped_kinds": kinds.most_common(),
        "balance": balance,
        "data_root": data_root,
    }


def training_section(run: RunFolder, metrics: dict | None, notes: Notes) -> dict | None:
    """Training curves (the run's plot) and the facts a reader looks for in history.csv."""
    rows = read_csv_rows(run.history, notes) or []
    plot = image_data_uri(run.history_png, notes)
    if not rows and plot is None:
        return None
    facts = []
    if rows:
        phases = list(dict.fromkeys(r.get("phase") or "" for r in rows if r.get("phase")))
        facts.append(("epochs", f"{len(rows)}" + (f" ({', '.join(phases)})" if len(phases) > 1 else "")))
        val = [(as_float(r.get("val_accuracy")), r) for r in rows]
        val = [(v, r) for v, r in val if v is not None]
        if val:
            best, best_row = max(val, key=lambda item: item[0])
            facts.append(("best val accuracy", f"{100 * best:.2f} % at epoch {best_row.get('epoch', '?')}"))
        last_train = as_float(rows[-1].get("accuracy"))
        if last_train is not None:
            facts.append(("last train accuracy", f"{100 * last_train:.2f} %"))
        epoch_seconds = [as_float(r.get("epoch_seconds")) for r in rows]
        epoch_seconds = [s for s in epoch_seconds if s is not None]
        if epoch_seconds:
            # The first epoch carries tracing and cache warm-up, so the median says more than the mean.
            facts.append(("time per epoch", f"{statistics.median(epoch_seconds):.1f} s median, "
                          f"{max(epoch_seconds):.1f} s slowest"))
        rss = [as_float(r.get("rss_mb")) for r in rows]
        rss = [v for v in rss if v is not None]
        if rss:
            facts.append(("peak RSS", f"{max(rss):,.0f} MB"))
    if metrics and as_float(metrics.get("train_seconds")) is not None:
        facts.append(("training time", f"{as_float(metrics['train_seconds']):.0f} s"))
    columns = [c for c in ("epoch", "phase", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "epoch_seconds")
               if rows and c in rows[0]]
    return {"plot": plot, "facts": facts, "columns": columns, "rows": rows}


def evaluation_section(folder: Path, notes: Notes, *, image_size, data_root: str | None) -> dict | None:
    """Metrics, confusion matrix, per-class P/R/F1 and the most confidently wrong images of one
    evaluation: the run's own test split (the run folder) or an ``edgecls evaluate`` folder."""
    files = RunFolder(folder)
    metrics = read_json(files.metrics, notes)
    report = read_json(files.classification_report_json, notes)
    metrics = metrics if isinstance(metrics, dict) else None
    report = report if isinstance(report, dict) else None
    if metrics is None and report is None:
        return None
    summary = {**(report or {}), **(metrics or {})}
    per_class = []
    for name, values in mapping(report, "per_class").items():
        if isinstance(values, dict):
            per_class.append({"name": name, **{k: values.get(k) for k in ("precision", "recall", "f1", "support")}})
    worst = sorted(per_class, key=lambda row: as_float(row["f1"]) if as_float(row["f1"]) is not None else 2)[:3]

    matrix_plot = image_data_uri(files.confusion_matrix_png, notes)
    matrix = None
    raw = (report or {}).get("confusion_matrix")
    if matrix_plot is None and isinstance(raw, list) and per_class and len(per_class) <= MAX_MATRIX_CLASSES:
        matrix = _matrix_table(raw, [row["name"] for row in per_class])

    comparison = summary.get("comparison") if isinstance(summary.get("comparison"), list) else []
    return {
        "folder": folder,
        "metrics": summary,
        "per_class": per_class,
        "worst": [row for row in worst if as_float(row["f1"]) is not None and as_float(row["f1"]) < 1.0],
        "matrix_plot": matrix_plot,
        "matrix": matrix,
        "comparison": [row for row in comparison if isinstance(row, dict)],
        "comparison_plot": image_data_uri(files.plots / "accuracy_comparison.png", notes),
        "mistakes": mistakes_gallery(files, notes, image_size=image_size, data_root=data_root,
                                     total=summary.get("num_samples")),
    }


def mistakes_gallery(files: RunFolder, notes: Notes, *, image_size, data_root: str | None, total) -> dict | None:
    """The most confidently wrong images (misclassified.csv is sorted that way), as the model saw them."""
    rows = read_csv_rows(files.misclassified, notes)
    plot = image_data_uri(files.misclassified_png, notes)
    if rows is None and plot is None:
        return None
    items = []
    for row in (rows or [])[:MAX_MISTAKES]:
        path = row.get("file") or ""
        items.append({
            "name": Path(path).name,
            "path": _relative_to(path, data_root),
            "true": row.get("true_label"),
            "predicted": row.get("predicted_label"),
            "confidence": as_float(row.get("confidence")),
            "true_score": as_float(row.get("true_label_score")),
            "thumb": _thumbnail(path, image_size, data_root),
        })
    with_thumbs = any(item["thumb"] for item in items)
    return {
        "count": len(rows) if rows is not None else None,
        "total": total,
        "tiles": items,
        # The run's own gallery stands in when the image files have moved since training.
        "plot": None if with_thumbs else plot,
    }


def _thumbnail(path: str, image_size, data_root: str | None) -> str | None:
    candidates = [Path(path)]
    if data_root and not Path(path).is_absolute():
        candidates.append(Path(data_root) / path)
    for candidate in candidates:
        if not candidate.is_file():
            continue
        try:
            pixels = load_image_array(candidate, image_size or THUMB_SIDE)
        except (BadImage, OSError, ValueError):
            return None
        img = Image.fromarray(pixels)
        side = max(img.size)
        if side < THUMB_SIDE:
            factor = math.ceil(THUMB_SIDE / side)
            img = img.resize((img.width * factor, img.height * factor), Image.Resampling.NEAREST)
        elif side > THUMB_SIDE * 1.5:
            img.thumbnail((int(THUMB_SIDE * 1.5),) * 2, Image.Resampling.BILINEAR)
        return pil_data_uri(img)
    return None


def _matrix_table(raw: list, names: list[str]) -> dict | None:
    try:
        cells = [[int(v) for v in row] for row in raw]
    except (TypeError, ValueError):
        return None
    if len(cells) != len(names) or any(len(row) != len(names) for row in cells):
        return None
    peak = max((max(row) for row in cells), default=0) or 1
    return {"names": names, "rows": [{"name": n, "cells": [(v, round(v / peak, 3), i == j) for j, v in enumerate(row)]}
                                     for i, (n, row) in enumerate(zip(names, cells))]}


def _skipped_from_scan(scan: dict) -> list[dict]:
    items = []
    for entry in scan.get("skipped") or []:
        if isinstance(entry, dict):
            items.append({"split": str(entry.get("split", "")), "path": str(entry.get("path", "")),
                          "reason": str(entry.get("reason", ""))})
    for entry in scan.get("archive_skipped") or []:
        if isinstance(entry, dict):
            items.append({"split": "archive", "path": str(entry.get("entry", "")),
                          "reason": "not extracted: " + str(entry.get("reason", ""))})
    return items


def _skipped_from_text(text: str) -> list[dict]:
    items = []
    for line in text.splitlines():
        if line.strip():
            path, _, reason = line.partition("\t")
            items.append({"split": "", "path": path, "reason": reason or "unknown"})
    return items


def _ordered(splits: list[str]) -> list[str]:
    return [s for s in SPLIT_ORDER if s in splits] + [s for s in splits if s not in SPLIT_ORDER]


def _relative_to(path: str, root: str | None) -> str:
    """A dataset file named from the dataset's folder: shorter, and the same on every machine."""
    if not root:
        return path
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return path
