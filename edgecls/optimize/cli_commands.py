"""CLI commands of the optimize stage; registered in edgecls.cli. Thin wrappers over the library."""

from __future__ import annotations

from pathlib import Path

import typer


def quantize_command(
    run: Path = typer.Argument(..., help="A run folder (from edgecls train)."),
    int8: bool = typer.Option(False, "--int8", help="Full-integer int8 (post-training, calibrated)."),
    qat: bool = typer.Option(False, "--qat", help="Quantization-aware training, then int8."),
    float16: bool = typer.Option(False, "--float16", help="Float16 weights."),
    dynamic: bool = typer.Option(False, "--dynamic", help="Dynamic-range (int8 weights, float activations)."),
    io: str = typer.Option("uint8", "--io", help="int8 model input/output type: uint8 | int8 | float."),
    calibration: int = typer.Option(300, help="Training images used to calibrate int8."),
    epochs: int = typer.Option(3, help="QAT epochs."),
    lr: float = typer.Option(1e-4, help="QAT learning rate."),
    batch_size: int | None = typer.Option(None),
    model: Path | None = typer.Option(None, "--model", help="Quantize another model of the run, e.g. exports/pruned.keras."),
    preserve_sparsity: bool = typer.Option(False, "--preserve-sparsity",
                                           help="With --qat on a pruned model: keep its zeros (prune-preserving QAT)."),
):
    """Quantize a run: writes RUN/exports/<variant>.tflite + .json and prints the accuracy table."""
    from edgecls.optimize.quantize import quantize_run

    quantize_run(run, int8=int8, qat=qat, float16=float16, dynamic=dynamic, io=io, calibration=calibration,
                 epochs=epochs, lr=lr, batch_size=batch_size, model=model, preserve_sparsity=preserve_sparsity)


def export_command(
    run: Path = typer.Argument(..., help="A run folder (from edgecls train)."),
    format: list[str] = typer.Option(["tflite"], "--format", "-f", help="tflite | onnx | saved_model | all (repeatable)."),
    int8: bool = typer.Option(False, "--int8", help="Also the int8 variant of each format that has one."),
    opset: int = typer.Option(17, help="ONNX opset."),
    calibration: int = typer.Option(300, help="Training images used to calibrate int8."),
    model: Path | None = typer.Option(None, "--model", help="Export another model of the run, e.g. exports/pruned.keras."),
):
    """Export a run to TFLite, ONNX and/or SavedModel, each with a sidecar and measured accuracy."""
    from edgecls.optimize.export import export_run

    formats = [part for item in format for part in item.split(",") if part]
    export_run(run, formats=formats, int8=int8, opset=opset, calibration=calibration, model=model)


def prune_command(
    run: Path = typer.Argument(..., help="A run folder (from edgecls train)."),
    sparsity: float = typer.Option(0.5, help="Target fraction of zero weights."),
    epochs: int = typer.Option(3, help="Fine-tuning epochs while pruning."),
    lr: float = typer.Option(1e-4, help="Fine-tuning learning rate."),
    batch_size: int | None = typer.Option(None),
    for_xnnpack: bool = typer.Option(False, "--for-xnnpack", help="Prune for XNNPACK sparse inference; export sparse fp32."),
):
    """Magnitude-prune a run; writes exports/pruned.keras, a pruned TFLite and the sparsity report."""
    from edgecls.optimize.prune import prune_run

    prune_run(run, target=sparsity, epochs=epochs, lr=lr, batch_size=batch_size, for_xnnpack=for_xnnpack)


def register(app) -> None:
    app.command("quantize")(quantize_command)
    app.command("prune")(prune_command)
    app.command("export")(export_command)
