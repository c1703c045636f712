"""The ``gradcam`` and ``report`` commands: parse, call ``edgecls.api``, print."""

from __future__ import annotations

from pathlib import Path

import typer

from edgecls import api
from edgecls.cli.options import NoProgress, NoWait, Quiet, RunArg, verbosity
from edgecls.cli.output import notes


def gradcam(
    run_or_model: Path = typer.Argument(..., metavar="RUN_OR_MODEL", help="A run folder or a .keras model file."),
    inputs: list[Path] = typer.Argument(..., metavar="IMG_OR_DIR...", help="Image files and folders."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the PNGs and gradcam.json."),
    layer: str | None = typer.Option(None, "--layer",
                                        help="Feature-map layer to explain (default: the last convolution's output)."),
    quiet: Quiet = False,
    no_progress: NoProgress = False,
    no_wait: NoWait = False,
):
    """Grad-CAM: a heatmap over each image showing what made the model choose its class."""
    from edgecls.deploy.inputs import skipped_note

    result = api.gradcam(run_or_model, inputs, out, layer=layer, wait=not no_wait, verbose=verbosity(quiet, no_progress))
    note = skipped_note(result.skipped)
    notes([note] if note else [])
    for record in result.records:
        typer.echo(f"{record['file']}: {record['label']} {record['score']:.3f} → {record['png']}")
    typer.echo(f"Grad-CAM on layer {result.layer}: {len(result.records)} image(s) → {result.out_dir}")


def report(run: RunArg, no_wait: NoWait = False):
    """One HTML page for a run: metrics, plots, mistakes, exports and benchmarks (RUN/report.html)."""
    typer.echo(f"report → {api.report(run, wait=not no_wait)}")
