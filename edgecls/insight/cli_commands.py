"""The ``gradcam`` command: a thin typer wrapper over ``edgecls.insight.gradcam.gradcam``."""

from __future__ import annotations

from pathlib import Path

import typer


def gradcam_command(
    run_or_model: Path = typer.Argument(..., metavar="RUN_OR_MODEL", help="A run folder or a .keras model file."),
    inputs: list[Path] = typer.Argument(..., metavar="IMG_OR_DIR...", help="Image files and folders."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the PNGs and gradcam.json."),
    layer: str | None = typer.Option(None, "--layer",
                                        help="Feature-map layer to explain (default: the last convolution's output)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
):
    """Grad-CAM: a heatmap over each image showing what made the model choose its class."""
    from edgecls.deploy.inputs import skipped_note
    from edgecls.insight.gradcam import gradcam

    report = gradcam(run_or_model, inputs, out, layer=layer, verbose=0 if quiet else 1)
    note = skipped_note(report.bad)
    if note:
        typer.echo(note, err=True)
    for record in report.records:
        typer.echo(f"{record['file']}: {record['label']} {record['score']:.3f} → {record['png']}")
    typer.echo(f"Grad-CAM on layer {report.layer}: {len(report.records)} image(s) → {report.out_dir}")
