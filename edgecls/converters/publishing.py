"""Writing exported variants with their sidecars, measuring each, and the table users read."""

from __future__ import annotations

from pathlib import Path

from edgecls.fsutil import atomic_path
from edgecls.metrics import top1_accuracy, top_k_or_none
from edgecls.results import ExportRecord
from edgecls.run_folder import MODEL
from edgecls.sidecar import build_sidecar, file_sizes, write_sidecar
from edgecls.training.run_context import RunContext


def measure_accuracy(model_path, ctx: RunContext) -> dict:
    """Top-1/top-5 of an exported file on the run's test split, through the deploy runtime."""
    from edgecls.deploy.runtimes import open_model

    runtime = open_model(model_path, quiet=True)
    probs = runtime.predict(ctx.test_images)
    labels = ctx.test_labels
    return {"top1": top1_accuracy(labels, probs), "top5": top_k_or_none(labels, probs), "split": "test",
            "num_samples": int(len(labels)), "predictions": probs}


def keras_accuracy(model, ctx: RunContext) -> float:
    from edgecls.training.pipeline import predict_probs

    return top1_accuracy(ctx.test_labels, predict_probs(model, ctx.test_images))


def write_tflite(ctx: RunContext, variant: str, blob: bytes, *, reference_top1: float | None,
                 extra: dict | None = None) -> ExportRecord:
    from edgecls.converters.tflite_inspect import inspect_tflite

    path = ctx.folder.export(variant, ".tflite")
    with atomic_path(path) as tmp:
        tmp.write_bytes(blob)
    info = inspect_tflite(blob)
    measured = measure_accuracy(path, ctx)
    integer = info["input"]["dtype"] in ("uint8", "int8")
    accuracy = _accuracy_entry(measured, reference_top1)
    sidecar = build_sidecar(
        model_file=path, fmt="tflite", variant=variant, labels=ctx.labels, architecture=ctx.config.model.arch,
        img_size=ctx.img_size, input_dtype=info["input"]["dtype"],
        input_quant=(info["input"]["scale"], info["input"]["zero_point"]),
        # From the graph, not the output type: int8 with --io float ends at float logits too.
        output_kind="probabilities" if info["ops"].get("SOFTMAX") else "logits",
        output_dtype=info["output"]["dtype"], output_quant=(info["output"]["scale"], info["output"]["zero_point"]),
        source_run=ctx.run_dir.resolve(), accuracy=accuracy,
        extra={"tflite": {k: info[k] for k in ("ops", "float_ops", "xnnpack_partitions")}, **(extra or {})},
    )
    write_sidecar(path, sidecar)
    notes = []
    if integer:
        notes.append(f"{info['xnnpack_partitions']} XNNPACK partition(s)")
        if info["float_ops"]:
            notes.append(f"float ops: {', '.join(sorted(set(info['float_ops'])))}")
    return ExportRecord(variant, path, file_sizes(path), measured["top1"], measured["top5"], "; ".join(notes))


def _accuracy_entry(measured: dict, reference_top1: float | None) -> dict:
    entry = {k: measured[k] for k in ("top1", "top5", "split", "num_samples")}
    if reference_top1 is not None:
        entry["float_top1"] = reference_top1
    return entry


def write_onnx(ctx: RunContext, variant: str, path: Path, *, reference_top1: float | None) -> ExportRecord:
    from edgecls.converters.onnx_export import onnx_sidecar_fields, write_onnx_sidecar

    measured = measure_accuracy(path, ctx)
    fields = onnx_sidecar_fields(path)
    fields["variant"] = variant
    sidecar = build_sidecar(model_file=path, labels=ctx.labels, architecture=ctx.config.model.arch,
                            source_run=ctx.run_dir.resolve(), accuracy=_accuracy_entry(measured, reference_top1),
                            **fields)
    write_onnx_sidecar(path, sidecar)
    return ExportRecord(variant, path, file_sizes(path), measured["top1"], measured["top5"])


def print_table(records: list[ExportRecord], float_top1: float, title: str = "exports") -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("variant", "file", "size", "gzip", "top-1", "vs float", "notes", title=title)
    table.add_row("keras float", MODEL, "", "", f"{float_top1:.4f}", "", "reference")
    for r in records:
        table.add_row(r.variant, r.path.name, _kb(r.size["bytes"]), _kb(r.size["gzip_bytes"]), f"{r.accuracy:.4f}",
                      f"{(r.accuracy - float_top1) * 100:+.2f} pt", r.notes)
    import sys

    # Logs and pipes get a wide table instead of rich's 80-column default.
    Console(width=None if sys.stdout.isatty() else 150).print(table)


def _kb(n: int) -> str:
    return f"{n / 1024:,.0f} KB" if n < 10 * 2**20 else f"{n / 2**20:,.1f} MB"


def variant_prefix(ctx: RunContext) -> str:
    # Variants of a derived model (exports/pruned.keras) are named after it: pruned_int8.tflite.
    stem = ctx.model_path.stem
    return "" if stem == "model" else f"{stem}_"
