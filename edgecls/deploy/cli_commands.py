"""The ``predict``, ``bench`` and ``bundle`` commands, as thin typer wrappers over the library.

Registered in ``edgecls.cli`` (``app.command("predict")(predict_command)`` and so on, or
``register(app)``). Heavy imports happen inside the commands so ``edgecls --help`` stays instant;
user mistakes raise ``EdgeclsError`` and ``edgecls.cli.main`` prints them as one line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer


def predict_command(
    model: Path = typer.Argument(..., metavar="MODEL", help="A .tflite, .onnx or .keras model (sidecar .json beside it)."),
    inputs: list[Path] = typer.Argument(..., metavar="[MODEL]... IMG_OR_DIR...",
                                        help="More models first (an ensemble: mean of probabilities), then image "
                                             "files and folders (searched recursively)."),
    top_k: int = typer.Option(5, "--top-k", "-k", help="Classes reported per image."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON list: one {file, top_k} record per image."),
    threads: int = typer.Option(1, "--threads", help="Runtime threads."),
):
    """Classify images: top-k labels and probabilities per image (several models: their mean)."""
    from edgecls.deploy.inputs import skipped_note
    from edgecls.deploy.predict import format_records, predict_ensemble, predict_files, split_models

    more_models, inputs = split_models(inputs)
    if more_models:
        result = predict_ensemble([model, *more_models], inputs, top_k=top_k, threads=threads)
        typer.echo(f"note: ensemble of {len(more_models) + 1} models ({result.runtime}): mean of their probabilities",
                   err=True)
    else:
        result = predict_files([model], inputs, top_k=top_k, threads=threads)[0]
    note = skipped_note(result.bad)
    if note:
        typer.echo(note, err=True)
    if json_out:
        typer.echo(json.dumps(result.records, indent=2))
    else:
        for line in format_records(result.records):
            typer.echo(line)


def bench_command(
    models: list[Path] | None = typer.Argument(None, metavar="[MODEL]...",
                                                  help="Model files and/or run folders (model.keras + exports/)."),
    runtime: str = typer.Option("all", "--runtime", "-r", help="tflite | onnx | keras | all (each model where it runs)."),
    data: Path | None = typer.Option(None, "--data", "-d",
                                        help="Class folders, or a dataset with a test/ folder, to measure accuracy on."),
    threads: int = typer.Option(1, "--threads", help="Runtime threads (default 1)."),
    runs: int = typer.Option(50, "--runs", help="Timed invocations per round."),
    rounds: int = typer.Option(5, "--rounds", help="Rounds of --runs; the spread of their medians is reported."),
    warmup: int = typer.Option(10, "--warmup", help="Untimed invocations first."),
    e2e_images: int = typer.Option(50, "--e2e-images", help="Files timed end to end (decode → answer)."),
    reference: Path | None = typer.Option(None, "--reference",
                                             help="Keras model (or run folder) to measure top-1 agreement against."),
    json_path: Path | None = typer.Option(None, "--json", help="Write the records as a JSON list."),
    csv_path: Path | None = typer.Option(None, "--csv", help="Write the records as CSV."),
    png_path: Path | None = typer.Option(None, "--png",
                                            help="Accuracy-vs-latency plot (default: beside --json/--csv)."),
    imports: list[Path] | None = typer.Option(None, "--import", help="Device rows from pi_infer.py --bench."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
):
    """Latency (p50/p90/p99), memory, size and accuracy of each model in each runtime."""
    from rich.console import Console

    from edgecls.bench.harness import bench
    from edgecls.bench.report import table, write_report

    result = bench(models or [], data=data, runtime=runtime, threads=threads, runs=runs, rounds=rounds,
                   warmup=warmup, e2e_images=e2e_images, reference=reference, imports=imports or [],
                   progress=not no_progress and sys.stderr.isatty())
    for note in result.notes:
        typer.echo(note, err=True)
    grid = table(result.records, title="edgecls bench: batch 1; p50/p90/p99 = model invocation alone")
    console = Console()
    needed = console.measure(grid, options=console.options.update_width(1000)).maximum
    if needed > console.width:  # wider than the terminal: let lines wrap rather than cut the numbers
        console = Console(width=needed)
    console.print(grid)
    if png_path is None and (json_path or csv_path):
        png_path = Path(json_path or csv_path).with_suffix(".png")
    for written in write_report(result.records, json_path=json_path, csv_path=csv_path, png_path=png_path):
        typer.echo(f"wrote {written}")


def bundle_command(
    run: Path = typer.Argument(..., metavar="RUN", help="The run folder (with exports/)."),
    out: Path = typer.Option(..., "--out", "-o", help="Bundle folder to write."),
    target: str = typer.Option("pi", "--target", help="Device: pi (Raspberry Pi, 64-bit OS)."),
    model: Path | None = typer.Option(None, "--model", help="Model to bundle (default: RUN/exports/int8.tflite)."),
    force: bool = typer.Option(False, "--force", help="Replace a non-empty --out folder."),
):
    """A folder for the device: model, sidecar, labels, pi_infer.py, requirements and README."""
    from edgecls.deploy.bundle import bundle

    written = bundle(run, out=out, target=target, model=model, force=force)
    files = sorted(p.name for p in written.iterdir())
    typer.echo(f"bundle for {target} → {written}: {', '.join(files)}")
    typer.echo(f"next: copy it to the Pi and follow {written / 'README.md'}")


def register(app: typer.Typer) -> None:
    """Add the three commands to ``app`` (what edgecls.cli does)."""
    app.command("predict")(predict_command)
    app.command("bench")(bench_command)
    app.command("bundle")(bundle_command)
