"""Writing exported variants with their sidecars, measuring each, and the table users read."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from edgecls.metrics import top1_accuracy, top_k_or_none
from edgecls.results import ExportRecord
from edgecls.run_folder import MODEL
from edgecls.sidecar import build_sidecar
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


@dataclasses.dataclass
class Described:
    """The sidecar of a new model file and what its graph showed (the formats table's ``describe``)."""

    sidecar: dict
    integer: bool  # integer arithmetic inside (int8 weights and activations)
    partitions: int | None = None  # XNNPACK partitions (TFLite)
    float_ops: list[str] = dataclasses.field(default_factory=list)  # ops left in float in an integer graph

    def notes(self) -> list[str]:
        notes = []
        if self.integer and self.partitions is not None:
            notes.append(f"{self.partitions} XNNPACK partition(s)")
        if self.integer and self.float_ops:
            notes.append(f"float ops: {', '.join(sorted(set(self.float_ops)))}")
        return notes


def describe_tflite(ctx: RunContext, path: Path, variant: str, accuracy: dict | None,
                    extra: dict | None = None) -> Described:
    from edgecls.converters.tflite_inspect import inspect_tflite
    from edgecls.converters.tflite_metadata import INFO_KEY, resolve_model_info

    info = inspect_tflite(Path(path).read_bytes())
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
    # The standard TFLite metadata's name, description, version, author and licence (edgecls.converters.tflite_metadata).
    sidecar["tflite"][INFO_KEY] = resolve_model_info(sidecar, ctx.config.metadata)
    return Described(sidecar, info["input"]["dtype"] in ("uint8", "int8"), info["xnnpack_partitions"],
                     list(info["float_ops"]))


def describe_onnx(ctx: RunContext, path: Path, variant: str, accuracy: dict | None,
                  extra: dict | None = None) -> Described:
    from edgecls.converters.onnx_metadata import onnx_sidecar_fields

    fields = onnx_sidecar_fields(path)
    fields["variant"] = variant
    fields["extra"] = {**fields["extra"], **(extra or {})}
    sidecar = build_sidecar(model_file=path, labels=ctx.labels, architecture=ctx.config.model.arch,
                            source_run=ctx.run_dir.resolve(), accuracy=accuracy, **fields)
    return Described(sidecar, bool(fields["extra"]["onnx"]["integer_ops"]))


def describe(ctx: RunContext, path: Path, variant: str, accuracy: dict | None, extra: dict | None = None) -> Described:
    """The sidecar of a model file of any format the table can describe (by its suffix)."""
    from edgecls import formats

    return formats.load(formats.for_path(path).describe)(ctx, Path(path), variant, accuracy, extra)


def publish_model(ctx: RunContext, variant: str, suffix: str, write, *, reference_top1: float | None,
                  extra: dict | None = None) -> ExportRecord:
    """Write, measure and describe ``exports/<variant><suffix>`` and publish it with its sidecar as one
    (edgecls.publish): ``write(tmp)`` writes the model at a temporary path; nothing under the final
    names changes until the model, its embedded sidecar and its JSON are all complete."""
    from edgecls.publish import publish

    measured, notes = {}, []

    def measure_and_describe(tmp: Path) -> dict:
        measured.update(measure_accuracy(tmp, ctx))
        described = describe(ctx, tmp, variant, _accuracy_entry(measured, reference_top1), extra)
        notes.extend(described.notes())
        return described.sidecar

    path = ctx.folder.export(variant, suffix)
    sidecar = publish(path, write, measure_and_describe)
    return ExportRecord(variant, path, sidecar["size"], measured["top1"], measured["top5"], "; ".join(notes))


def write_tflite(ctx: RunContext, variant: str, blob: bytes, *, reference_top1: float | None,
                 extra: dict | None = None) -> ExportRecord:
    return publish_model(ctx, variant, ".tflite", lambda tmp: tmp.write_bytes(blob), reference_top1=reference_top1,
                         extra=extra)


def _accuracy_entry(measured: dict, reference_top1: float | None) -> dict:
    entry = {k: measured[k] for k in ("top1", "top5", "split", "num_samples")}
    if reference_top1 is not None:
        entry["float_top1"] = reference_top1
    return entry


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
