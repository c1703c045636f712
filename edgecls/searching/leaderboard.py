"""The optimize leaderboard: choosing a candidate, and the files and table that show the choice.

Choosing reads the validation columns only; the test columns are carried along to be reported.
Nothing here imports TensorFlow.
"""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

from edgecls.devices.machine_probe import where_text
from edgecls.fsutil import write_json, write_text

OBJECTIVES = ("latency", "size")
# Latencies this close are one latency measured twice: the more accurate candidate wins the tie.
LATENCY_TIE = 0.03
CSV_COLUMNS = ("variant", "format", "family", "val_accuracy", "val_drop_pt", "test_accuracy", "test_drop_pt",
               "latency_ms", "latency_vs_float32", "size_bytes", "gzip_bytes", "partitions", "float_ops",
               "within_budget", "slower_than_float32", "chosen", "build_seconds", "where", "notes", "path")


def score(record: dict, objective: str) -> float:
    """What the objective minimises: measured latency (ms), or the gzip size of the file."""
    value = record.get("latency_ms") if objective == "latency" else record.get("gzip_bytes")
    return float("inf") if value is None else float(value)


def val_drop_pt(val_accuracy: float, float_val_accuracy: float) -> float:
    """Absolute drop in percentage points of validation top-1 (0.5 = half a point, not half a percent)."""
    return (float_val_accuracy - val_accuracy) * 100.0


def mark_budget(records: list[dict], max_drop: float, *, forbid_slow_int8: bool = True) -> None:
    """Set ``within_budget`` from the validation drop; with ``forbid_slow_int8``, also exclude
    integer models slower than the float32 model of their runtime.

    For onnxruntime an int8 model can run slower than fp32 (int8 activations, or ops without
    fused integer kernels) and is then no optimisation whatever its size; the search forbids it
    there always, and for TFLite when the objective is latency (for size, smaller wins).
    """
    reference = {r["format"]: r.get("latency_ms") for r in records if r.get("family") in ("float32", "onnx_float32")}
    for record in records:
        fits = record["val_drop_pt"] <= max_drop + 1e-9
        float_ms = reference.get(record["format"])
        slower = (forbid_slow_int8 and record.get("integer") and float_ms is not None
                  and record.get("latency_ms") is not None and record["latency_ms"] > float_ms)
        record["within_budget"] = bool(fits and not slower)
        record["slower_than_float32"] = bool(slower)


def choose(records: list[dict], objective: str) -> dict | None:
    """The best record within budget on the objective (validation only), or None.

    Latencies within ``LATENCY_TIE`` of the fastest are ties, won by the higher validation
    accuracy; sizes tie only when equal. ``within_budget`` must be set (:func:`mark_budget`).
    """
    eligible = [r for r in records if r.get("within_budget")]
    if not eligible:
        return None
    best = min(score(r, objective) for r in eligible)
    tolerance = LATENCY_TIE if objective == "latency" else 0.0
    near = [r for r in eligible if score(r, objective) <= best * (1 + tolerance)]
    return max(near, key=lambda r: (r["val_accuracy"], -score(r, objective)))


def closest(records: list[dict]) -> dict | None:
    """When nothing fits: the candidate with the smallest validation drop."""
    return min(records, key=lambda r: (r["val_drop_pt"], score(r, "latency")), default=None)


def write_leaderboard(out_dir: Path, records: list[dict], meta: dict) -> None:
    """``leaderboard.json`` (meta + records) and ``leaderboard.csv``, each written atomically."""
    write_json(out_dir / "leaderboard.json", {**meta, "candidates": records})
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for record in records:
        row = {k: _csv_value(record.get(k)) for k in CSV_COLUMNS}
        row["where"] = where_text(record["where"]) if record.get("where") else ""
        writer.writerow(row)
    write_text(out_dir / "leaderboard.csv", buffer.getvalue())


def _csv_value(value):
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else value


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def print_leaderboard(records: list[dict], *, float_val: float, max_drop: float, objective: str,
                      title: str, where: dict | None = None) -> None:
    """The leaderboard as a rich table on stderr (stdout stays clean for --json)."""
    from rich.console import Console
    from rich.table import Table

    table = Table("", "variant", "val top-1", "val drop", "test top-1", "latency", "vs fp32", "size", "gzip",
                  "partitions", "notes", title=title,
                  caption=f"float val top-1 {float_val:.4f}; budget: at most {max_drop:g} pt (absolute) below it "
                          f"on the validation split; objective: {objective}; test split reported only"
                          + (f"; latency timed on {where_text(where)}" if where else ""))
    for r in records:
        mark = "★" if r.get("chosen") else ("" if r.get("within_budget") else "✗")
        table.add_row(mark, r["variant"], f"{r['val_accuracy']:.4f}", f"{0.0 - r['val_drop_pt']:+.2f} pt",
                      f"{r['test_accuracy']:.4f}", _ms(r.get("latency_ms")),
                      "" if r.get("latency_vs_float32") is None else f"{r['latency_vs_float32']:.2f}×",
                      _kb(r["size_bytes"]), _kb(r["gzip_bytes"]),
                      "" if r.get("partitions") is None else str(r["partitions"]),
                      _join(r.get("notes", ""), "int8 slower than float32: never chosen" if r.get("slower_than_float32") else ""))
    Console(stderr=True, width=None if sys.stderr.isatty() else 160).print(table)


def _ms(value) -> str:
    return "" if value is None else f"{value:.3f} ms"


def _kb(n) -> str:
    return "" if n is None else (f"{n / 1024:,.0f} KB" if n < 10 * 2**20 else f"{n / 2**20:,.1f} MB")


def pareto_front(records: list[dict]) -> list[dict]:
    """Records no other record beats on both validation accuracy and latency."""
    front = []
    for r in records:
        if r.get("latency_ms") is None:
            continue
        dominated = any(o is not r and o.get("latency_ms") is not None and o["latency_ms"] <= r["latency_ms"]
                        and o["val_accuracy"] >= r["val_accuracy"]
                        and (o["latency_ms"] < r["latency_ms"] or o["val_accuracy"] > r["val_accuracy"])
                        for o in records)
        if not dominated:
            front.append(r)
    return sorted(front, key=lambda r: r["latency_ms"])


def plot_pareto(path: Path, records: list[dict], *, float_val: float, max_drop: float, title: str) -> Path:
    """Validation accuracy against latency; marker area follows the file size; the chosen one ringed."""
    from matplotlib.figure import Figure

    from edgecls.training.evaluation_reports import save_figure

    timed = [r for r in records if r.get("latency_ms") is not None]
    fig = Figure(figsize=(7.5, 5.0), layout="constrained")
    ax = fig.add_subplot()
    if timed:
        largest = max(r["size_bytes"] for r in timed) or 1
        for r in timed:
            colour = "tab:green" if r.get("within_budget") else "tab:grey"
            ax.scatter(r["latency_ms"], r["val_accuracy"] * 100, s=40 + 600 * r["size_bytes"] / largest,
                       color=colour, alpha=0.6, edgecolors="black", linewidths=0.5)
            ax.annotate(r["variant"], (r["latency_ms"], r["val_accuracy"] * 100), fontsize=7,
                        xytext=(4, 4), textcoords="offset points")
        front = pareto_front(timed)
        ax.plot([r["latency_ms"] for r in front], [r["val_accuracy"] * 100 for r in front], color="tab:blue",
                linewidth=0.8, linestyle="--", label="Pareto front")
        chosen = [r for r in timed if r.get("chosen")]
        for r in chosen:
            ax.scatter(r["latency_ms"], r["val_accuracy"] * 100, s=400, facecolors="none", edgecolors="tab:red",
                       linewidths=2.0, label=f"chosen: {r['variant']}")
    ax.axhline(float_val * 100, color="black", linewidth=0.8, label=f"float {float_val * 100:.2f} %")
    ax.axhline((float_val * 100) - max_drop, color="tab:red", linewidth=0.8, linestyle=":",
               label=f"budget: −{max_drop:g} pt")
    low, high = ax.get_ylim()
    ax.set_ylim(low, min(high, 100.5))  # room for markers at 100 %, no axis beyond it
    ax.set_xlabel("latency per image (ms, median, interleaved)")
    ax.set_ylabel("validation top-1 (%)")
    ax.set_title(f"{title}\nmarker area ∝ file size; grey: outside the budget", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    return save_figure(fig, path, dpi=110)
