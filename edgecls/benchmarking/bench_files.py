"""The bench report: a table on screen, JSON (the records as they are), CSV (flattened) and a PNG plot."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from edgecls.fsutil import atomic_path, write_json, write_text

CSV_COLUMNS = (
    "name", "model", "variant", "format", "runtime", "backend", "role", "source", "where", "machine", "host", "cpu",
    "cpu_flags",
    "python", "threads", "input_size", "batch", "size_bytes", "load_ms", "peak_rss_mb", "rss_growth_mb",
    "latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "latency_mean_ms", "latency_min_ms",
    "rounds", "runs_per_round", "warmup", "round_medians_ms", "round_spread_pct", "throughput_ips",
    "preprocess_p50_ms", "preprocess_mean_ms", "end_to_end_p50_ms", "end_to_end_mean_ms",
    "input", "images", "accuracy_measured", "accuracy", "top5_accuracy", "agreement", "reference", "data",
)
NOT_MEASURED = "not measured"  # the top-1 cell of a row timed without --data


def flatten(record: dict) -> dict:
    """One CSV row: nested timings become ``<group>_<stat>_ms`` columns."""
    row = {key: record.get(key) for key in CSV_COLUMNS if not isinstance(record.get(key), (dict, list))}
    for group in ("latency", "preprocess", "end_to_end"):
        for stat, value in (record.get(f"{group}_ms") or {}).items():
            row[f"{group}_{stat}_ms"] = value
    rounds = record.get("rounds") or {}
    row.update({"rounds": rounds.get("count"), "runs_per_round": rounds.get("runs_per_round"),
                "warmup": rounds.get("warmup"), "round_spread_pct": rounds.get("spread_pct"),
                "round_medians_ms": ";".join(f"{m:.4f}" for m in rounds.get("medians_ms") or [])})
    if record.get("input_size"):
        row["input_size"] = "x".join(str(v) for v in record["input_size"])
    where = record.get("where") or {}
    row["where"], row["cpu_flags"] = where.get("on"), " ".join(where.get("cpu_flags") or []) or None
    return {key: row.get(key) for key in CSV_COLUMNS}


def write_records_json(path, records) -> Path:
    return write_json(path, list(records))


def write_records_csv(path, records) -> Path:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: ("" if v is None else v) for k, v in flatten(record).items()})
    return write_text(path, buffer.getvalue())


def _fmt(value, digits=2, scale=1.0) -> str:
    return "–" if value is None else f"{value * scale:.{digits}f}"


def _ms(value) -> str:
    if value is None:
        return "–"
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def table(records, title: str | None = None):
    """A rich Table: one row per (model, runtime, machine); the JSON/CSV hold every field."""
    from rich.table import Table

    grid = Table(title=title, title_justify="left")
    grid.add_column("model", no_wrap=True)
    for name in ("runtime", "where"):
        grid.add_column(name, no_wrap=True)
    for name in ("thr", "p50 ms", "p90", "p99", "±rounds %", "e2e ms", "load ms", "RSS MB", "KB", "top-1", "top-5",
                 "agree"):
        grid.add_column(name, justify="right", no_wrap=True)
    for r in records:
        latency = r.get("latency_ms") or {}
        on = (r.get("where") or {}).get("on") or ("device" if r.get("source") == "device" else "")
        where = f"{on} {r.get('machine') or ''}"
        grid.add_row(
            str(r.get("name") or r.get("model")), str(r.get("runtime")), where.strip() or "–",
            str(r.get("threads", "–")), _ms(latency.get("p50")), _ms(latency.get("p90")), _ms(latency.get("p99")),
            _fmt((r.get("rounds") or {}).get("spread_pct"), 1), _ms((r.get("end_to_end_ms") or {}).get("p50")),
            _fmt(r.get("load_ms"), 0), _fmt(r.get("peak_rss_mb"), 0), _fmt(r.get("size_bytes"), 0, 1 / 1024),
            _top1_cell(r), _fmt(r.get("top5_accuracy"), 4), _fmt(r.get("agreement"), 4),
        )
    if any(_top1_cell(r) == NOT_MEASURED for r in records):
        grid.caption = "top-1 not measured: timed on synthetic input of the model's shape (no --data)"
        grid.caption_justify = "left"
    return grid


def _accuracy_measured(record: dict) -> bool:
    """Whether a row has a top-1: rows timed without --data (host or device) have none."""
    if "accuracy_measured" in record:
        return bool(record["accuracy_measured"])
    return record.get("accuracy") is not None or bool(record.get("images"))


def _top1_cell(record: dict) -> str:
    return _fmt(record.get("accuracy"), 4) if _accuracy_measured(record) else NOT_MEASURED


def plot_accuracy_latency(path, records) -> Path | None:
    """Accuracy against p50 latency, marker area proportional to file size; None when nothing to plot."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    points = [r for r in records if r.get("accuracy") is not None and (r.get("latency_ms") or {}).get("p50")]
    if not points:
        return None
    largest = max((r.get("size_bytes") or 0) for r in points) or 1
    colours = {"tflite": "tab:blue", "onnx": "tab:orange", "keras": "tab:green"}  # another runtime: grey
    figure = Figure(figsize=(7, 4.5), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for number, r in enumerate(points):
        x, y = r["latency_ms"]["p50"], r["accuracy"]
        area = 40 + 600 * (r.get("size_bytes") or 0) / largest
        device = r.get("source") == "device"
        axes.scatter([x], [y], s=area, alpha=0.6, color=colours.get(r.get("runtime"), "tab:gray"),
                     marker="^" if device else "o", edgecolors="black", linewidths=0.5)
        label = f"{r.get('name')} ({r.get('runtime')}{', ' + str(r.get('machine')) if device else ''})"
        axes.annotate(label, (x, y), textcoords="offset points", fontsize=7,
                      xytext=(6, 4 - 10 * (number % 3)))  # staggered: equal accuracies are common
    latencies = [r["latency_ms"]["p50"] for r in points]
    if max(latencies) / max(min(latencies), 1e-9) > 20:
        axes.set_xscale("log")
    threads = sorted({str(r.get("threads")) for r in points})
    axes.set_xlabel(f"model latency p50, ms (batch 1, threads {'/'.join(threads)})")
    axes.set_ylabel("top-1 accuracy")
    axes.set_title("accuracy vs latency (marker area ∝ file size; ▲ = device)", fontsize=10)
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp)
    return Path(path)


def write_report(records, *, json_path=None, csv_path=None, png_path=None) -> list[Path]:
    """Write whichever outputs were asked for; returns the paths written."""
    written = []
    if json_path:
        written.append(write_records_json(json_path, records))
    if csv_path:
        written.append(write_records_csv(csv_path, records))
    if png_path:
        plotted = plot_accuracy_latency(png_path, records)
        if plotted:
            written.append(plotted)
    return written
