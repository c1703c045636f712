"""The report's sections about what was made from the model: exported variants, the optimize
leaderboard, benchmarks and Grad-CAM images. Each returns None when the run has none of it."""

from __future__ import annotations

from pathlib import Path

from edgecls.benchmarking.parity import pairs as parity_pairs
from edgecls.devices.machine_probe import where_text
from edgecls.errors import EdgeclsError, ModelFileError
from edgecls.html_report.reading import Notes, as_float, image_data_uri, mapping, read_json
from edgecls.models.model_files import read_labels
from edgecls.run_folder import RunFolder
from edgecls.sidecar import StaleSidecarError, check_outputs_match_labels, check_pair

SIDECAR_SCHEMA = "edgecls.sidecar/"
BENCH_SCHEMA = "edgecls.bench/"
MAX_GRADCAM = 8
# Folders that hold training state, never report inputs; walking them would be slow.
_NOT_SEARCHED = {"checkpoints", "tensorboard"}


def variants_section(run: RunFolder, metrics: dict | None, notes: Notes) -> dict | None:
    """One row per exported model (from its sidecar), beside the float Keras model it came from."""
    if not run.exports.is_dir():
        return None
    rows = []
    run_labels = _run_labels(run)
    for path in sorted(run.exports.glob("*.json")):
        sidecar = read_json(path, notes)
        if not isinstance(sidecar, dict) or not str(sidecar.get("schema", "")).startswith(SIDECAR_SCHEMA):
            continue
        row = _variant_row(run, sidecar)
        if row["exists"]:
            try:
                check_pair(run.exports / row["file"], sidecar, path)
            except StaleSidecarError as err:  # its figures are another file's: shown, flagged, named in the notes
                notes.add(path, str(err))
                row["details"].insert(0, "STALE: this sidecar describes other bytes than the file")
            else:
                _check_labels(run, row, sidecar, run_labels, notes)
        rows.append(row)
    if not rows:
        return None
    float_top1 = as_float((metrics or {}).get("accuracy"))
    reference = None
    if run.model.is_file():
        reference = {"variant": "float (Keras)", "format": "keras", "file": run.model.name, "exists": True,
                     "size": run.model.stat().st_size, "gzip": None, "top1": float_top1, "delta": None,
                     "input": "", "details": ["the trained model, the reference for every row"]}
    rows.sort(key=lambda row: (-(row["size"] or 0), row["variant"]))
    smallest = min((row for row in rows if row["size"]), key=lambda row: row["size"], default=None)
    return {"reference": reference, "rows": rows, "smallest": smallest}


def _run_labels(run: RunFolder) -> list[str] | None:
    try:
        return read_labels(run)
    except EdgeclsError:  # no labels.txt, or too few: nothing to check exports against
        return None


def _check_labels(run: RunFolder, row: dict, sidecar: dict, run_labels, notes: Notes) -> None:
    """Flag a model that answers for other classes than the run's: its sidecar (checked against its
    bytes, and against its outputs when it was exported) lists another number of labels."""
    labels = sidecar.get("labels")
    if run_labels is None or not isinstance(labels, list):
        return
    try:
        check_outputs_match_labels(len(labels), run_labels, run.exports / row["file"], source=str(run.labels))
    except ModelFileError as err:
        notes.add(run.exports / row["file"], str(err))
        row["details"].insert(0, "FOREIGN: its outputs are not this run's classes")


def _variant_row(run: RunFolder, sidecar: dict) -> dict:
    accuracy = mapping(sidecar, "accuracy")
    size = mapping(sidecar, "size")
    inputs = mapping(sidecar, "input")
    top1, float_top1 = as_float(accuracy.get("top1")), as_float(accuracy.get("float_top1"))
    shape = inputs.get("shape") if isinstance(inputs.get("shape"), list) else []
    hw = "×".join(str(v) for v in shape[1:3]) if len(shape) >= 3 else ""
    details = []
    tflite = mapping(sidecar, "tflite")
    if tflite.get("xnnpack_partitions") is not None:
        details.append(f"{tflite['xnnpack_partitions']} XNNPACK partition(s)")
    if tflite.get("float_ops"):
        details.append("float ops: " + ", ".join(str(op) for op in tflite["float_ops"]))
    onnx = mapping(sidecar, "onnx")
    if onnx.get("opset") is not None:
        details.append(f"opset {onnx['opset']}")
    pruning = mapping(sidecar, "pruning")
    if as_float(pruning.get("overall_sparsity")) is not None:
        details.append(f"{100 * as_float(pruning['overall_sparsity']):.0f} % zero weights")
    if sidecar.get("calibration_images"):
        details.append(f"calibrated on {sidecar['calibration_images']} images")
    model_file = str(sidecar.get("model_file") or "")
    return {
        "variant": str(sidecar.get("variant") or Path(model_file).stem),
        "format": str(sidecar.get("format") or ""),
        "file": model_file,
        "exists": bool(model_file) and (run.exports / model_file).exists(),
        "input": f"{inputs.get('dtype', '')} {hw}".strip(),
        "size": as_float(size.get("bytes")),
        "gzip": as_float(size.get("gzip_bytes")),
        "top1": top1,
        "delta": None if top1 is None or float_top1 is None else top1 - float_top1,
        "details": details,
    }


def leaderboard_section(run: RunFolder, notes: Notes) -> dict | None:
    """``edgecls optimize``'s candidates, judged on validation data, with the Pareto plot."""
    folder = run.optimize
    payload = read_json(folder / "leaderboard.json", notes)
    plot = image_data_uri(folder / "pareto.png", notes)
    if payload is None and plot is None:
        return None
    summary = {}
    records = payload
    if isinstance(payload, dict):
        records = next((payload[k] for k in ("leaderboard", "records", "candidates") if isinstance(payload.get(k), list)), [])
        summary = {k: v for k, v in payload.items() if not isinstance(v, (list, dict)) or k == "where"}
    rows = [r for r in (records or []) if isinstance(r, dict)] if isinstance(records, list) else []
    chosen = next((r for r in rows if r.get("chosen")), None)
    return {"rows": rows, "chosen": chosen, "summary": summary, "facts": _search_facts(summary), "plot": plot,
            "has_partitions": any(r.get("partitions") is not None for r in rows),
            "has_notes": any(r.get("notes") for r in rows)}


def _search_facts(summary: dict) -> list[tuple[str, str]]:
    """The search's settings and outcome in words (leaderboard.json's top-level fields)."""
    facts = []
    if summary.get("budget"):
        facts.append(("budget", str(summary["budget"])))
    elif as_float(summary.get("max_drop_pt")) is not None:
        facts.append(("budget", f"at most {as_float(summary['max_drop_pt']):g} pt of validation top-1 below float"))
    setting = ", ".join(f"{key} {summary[key]}" for key in ("objective", "runtime", "threads") if summary.get(key))
    if setting:
        facts.append(("search", setting))
    if isinstance(summary.get("where"), dict):
        facts.append(("latency timed on", where_text(summary["where"])))
    if as_float(summary.get("float_val_accuracy")) is not None:
        images = f" on {summary['val_images']} images" if summary.get("val_images") else ""
        facts.append(("float validation top-1", f"{100 * as_float(summary['float_val_accuracy']):.2f} %{images}"))
    outcome = [str(summary[key]) for key in ("status", "stop_reason") if summary.get(key)]
    if as_float(summary.get("search_seconds")) is not None:
        outcome.append(f"{as_float(summary['search_seconds']):.0f} s")
    if outcome:
        facts.append(("outcome", ", ".join(outcome)))
    return facts


def bench_section(run: RunFolder, notes: Notes) -> dict | None:
    """The records ``edgecls bench`` wrote (exports/bench.json, or another *bench*.json of the run)."""
    for path in _bench_candidates(run):
        records = read_json(path, notes)
        if not (isinstance(records, list) and records and all(isinstance(r, dict) for r in records)
                and str(records[0].get("schema", "")).startswith(BENCH_SCHEMA)):
            continue
        rows = [_bench_row(r, run.path.resolve().name) for r in records]
        timed = [row for row in rows if row["p50"] is not None]
        fastest = min(timed, key=lambda row: row["p50"]) if timed else None
        data = {str(r.get("data")) for r in records if r.get("data")}
        images = {int(as_float(r["images"])) for r in records if as_float(r.get("images"))}
        return {
            "file": notes.relative(path),
            "rows": rows,
            "fastest": fastest,
            "plot": image_data_uri(path.with_suffix(".png"), notes),
            "data": ", ".join(sorted(data)),
            "images": ", ".join(str(n) for n in sorted(images)),
            # One machine for every row (the usual case) is said once instead of in a column.
            "machines": sorted({row["where"] for row in rows if row["where"]}),
            "parity": [_parity_row(pair, run.path.resolve().name) for pair in parity_pairs(records)],
        }
    return None


def _parity_row(pair: dict, run_name: str) -> dict:
    """One pair of ``bench --parity`` (edgecls.benchmarking.parity), as the table shows it."""
    def side(key: str) -> str:
        found = mapping(pair, key)
        return f"{str(found.get('name') or '?').removeprefix(f'{run_name}/')} ({found.get('runtime') or '?'})"

    return {"a": side("a"), "b": side("b"), "images": pair.get("images"),
            **{key: as_float(pair.get(key)) for key in ("agreement", "mean_abs_dp", "max_abs_dp", "top1_a", "top1_b")}}


def _bench_candidates(run: RunFolder) -> list[Path]:
    found = [run.bench_json]
    for folder in (run.exports, run.path):
        if folder.is_dir():
            found += sorted(folder.glob("*bench*.json"))
    return list(dict.fromkeys(path for path in found if path.is_file()))


def _bench_row(record: dict, run_name: str) -> dict:
    latency = mapping(record, "latency_ms")
    rounds = mapping(record, "rounds")
    e2e = mapping(record, "end_to_end_ms")
    if isinstance(record.get("where"), dict):
        where = where_text(record["where"])
    else:  # rows written before bench recorded where
        where = record.get("machine") or ""
        if record.get("source") == "device":
            where = f"{record.get('host') or 'device'} ({where})" if where else (record.get("host") or "device")
    name = str(record.get("name") or Path(str(record.get("model", ""))).name)
    return {
        "name": name.removeprefix(f"{run_name}/"),
        "runtime": record.get("runtime") or "",
        "backend": record.get("backend") or "",
        "where": where,
        "threads": record.get("threads"),
        "p50": as_float(latency.get("p50")),
        "p90": as_float(latency.get("p90")),
        "p99": as_float(latency.get("p99")),
        "spread": as_float(rounds.get("spread_pct")),
        "e2e": as_float(e2e.get("p50")),
        "load": as_float(record.get("load_ms")),
        "rss": as_float(record.get("peak_rss_mb")),
        "size": as_float(record.get("size_bytes")),
        "top1": as_float(record.get("accuracy")),
        "top5": as_float(record.get("top5_accuracy")),
        "agreement": as_float(record.get("agreement")),
    }


def gradcam_section(run: RunFolder, notes: Notes) -> dict | None:
    """Grad-CAM images of the run: every gradcam.json found in the run folder (``--out`` inside it)."""
    groups = []
    shown = 0
    for listing in _gradcam_listings(run.path):
        payload = read_json(listing, notes)
        if not isinstance(payload, dict) or not isinstance(payload.get("images"), list):
            continue
        items = []
        for entry in payload["images"]:
            if shown >= MAX_GRADCAM or not isinstance(entry, dict):
                break
            png = Path(str(entry.get("png") or ""))
            if not png.is_file():
                png = listing.parent / png.name  # the folder was moved or copied since
            uri = image_data_uri(png, notes) if png.name else None
            if uri is None:
                continue
            items.append({"uri": uri, "label": entry.get("label"), "score": as_float(entry.get("score")),
                          "name": Path(str(entry.get("file") or png.name)).name})
            shown += 1
        if items:
            groups.append({"folder": notes.relative(listing.parent), "layer": payload.get("layer"), "images": items,
                           "total": len(payload["images"])})
    return {"groups": groups} if groups else None


def _gradcam_listings(root: Path) -> list[Path]:
    found = [root / "gradcam.json"]
    for child in sorted(p for p in root.iterdir() if p.is_dir() and p.name not in _NOT_SEARCHED):
        found.append(child / "gradcam.json")
        found += sorted(child.glob("*/gradcam.json"))
    return [path for path in found if path.is_file()]
