"""The ``predict``, ``bench`` and ``bundle`` commands: parse, call ``edgecls.api``, print."""

from __future__ import annotations

from pathlib import Path

import typer

from edgecls import api, formats
from edgecls.cli.options import DeviceOption, DevicePython, Force, Json, Model, NoProgress, Quiet, SshConfig, Threads, verbosity
from edgecls.cli.output import emit_json, notes, stdout_to_stderr, wide_console


def predict(
    model: Path = typer.Argument(..., metavar="MODEL", help=f"A {formats.choices(formats.runnable_suffixes())} model (sidecar .json beside it)."),
    inputs: list[Path] = typer.Argument(..., metavar="[MODEL]... IMG_OR_DIR...",
                                        help="More models first (an ensemble: mean of probabilities), then image "
                                             "files and folders (searched recursively)."),
    top_k: int = typer.Option(5, "--top-k", "-k", help="Classes reported per image."),
    json_out: Json = False,
    threads: Threads = 1,
):
    """Classify images: top-k labels and probabilities per image (several models: their mean)."""
    from edgecls.deploy.prediction import format_records, split_models

    more_models, images = split_models(inputs)
    with stdout_to_stderr(json_out):
        records = api.predict([model, *more_models], images, top_k=top_k, threads=threads)
    notes(records.notes)
    if json_out:
        emit_json(records)
    else:
        for line in format_records(records):
            typer.echo(line)


def bench(
    models: list[Path] | None = typer.Argument(None, metavar="[MODEL]...",
                                                  help="Model files and/or run folders (model.keras + exports/)."),
    runtime: str = typer.Option(
        "all", "--runtime", "-r",
        help=f"{formats.help_text(formats.runtime_names(), extra=('all',))} (each model where it runs)."),
    data: str | None = typer.Option(None, "--data", "-d",
                                    help="Class folders, or a dataset with a test/ folder, whose test images "
                                         "accuracy is measured on (without it: latency on synthetic input of "
                                         "the model's shape, accuracy not measured)."),
    threads: Threads = 1,
    runs: int = typer.Option(50, "--runs", help="Timed invocations per round."),
    rounds: int = typer.Option(5, "--rounds", help="Rounds of --runs; the spread of their medians is reported."),
    warmup: int = typer.Option(10, "--warmup", help="Untimed invocations first."),
    e2e_images: int = typer.Option(50, "--e2e-images", help="Files timed end to end (decode → answer)."),
    reference: Path | None = typer.Option(None, "--reference",
                                             help="Keras model (or run folder) to measure top-1 agreement against."),
    parity: bool = typer.Option(False, "--parity",
                                help="Compare every two runtimes that ran one model on the --data images (Keras, "
                                     "LiteRT, ONNX Runtime, MediaPipe with $EDGECLS_MEDIAPIPE_PYTHON; with --device, the "
                                     "device's runtime beside the host's): top-1 agreement, mean/max |Δ probability|, "
                                     "each one's top-1."),
    json_out: Json = False,
    json_path: Path | None = typer.Option(None, "--json-out", help="Write the records as a JSON list to this file "
                                                                    "(formerly --json FILE)."),
    csv_path: Path | None = typer.Option(None, "--csv", help="Write the records as CSV."),
    png_path: Path | None = typer.Option(None, "--png",
                                            help="Accuracy-vs-latency plot (default: beside --json-out/--csv)."),
    imports: list[Path] | None = typer.Option(None, "--import", help="Device rows from pi_infer.py --bench."),
    device: DeviceOption = None,
    device_python: DevicePython = "python3",
    device_images: int = typer.Option(500, "--device-images", help="--device with --data: test images copied "
                                                                   "there (once) to measure top-1 on."),
    device_timeout: float = typer.Option(1800, "--device-timeout", help="--device: seconds the timing may run "
                                                                        "there before it is killed."),
    ssh_config: SshConfig = None,
    quiet: Quiet = False,
    no_progress: NoProgress = False,
):
    """Latency (p50/p90/p99), memory, size and accuracy of each model in each runtime."""
    from edgecls.benchmarking.bench_files import table
    from edgecls.benchmarking.parity import table as parity_table

    with stdout_to_stderr(json_out):
        records = api.bench(models or [], data=data, runtime=runtime, threads=threads, runs=runs, rounds=rounds,
                            warmup=warmup, e2e_images=e2e_images, reference=reference, imports=imports or [],
                            json_out=json_path, csv_out=csv_path, png_out=png_path, parity_table=parity,
                            verbose=verbosity(quiet, no_progress), device=device, device_python=device_python,
                            device_images=device_images, ssh_config=ssh_config, device_timeout=device_timeout)
    notes(records.notes)
    grid = table(records, title="edgecls bench: batch 1; p50/p90/p99 = model invocation alone")
    # With --json the table is for the person watching: stderr, beside the progress.
    wide_console(grid, stderr=json_out).print(grid)
    pairs = parity_table(records)
    if pairs is not None:
        wide_console(pairs, stderr=json_out).print(pairs)
    for written in records.files:
        typer.echo(f"wrote {written}", err=json_out)
    if json_out:
        emit_json(records)


def bundle(
    run: Path = typer.Argument(..., metavar="RUN", help="The run folder (with exports/)."),
    out: Path = typer.Option(..., "--out", "-o", help="Bundle folder to write."),
    target: str = typer.Option("pi", "--target", help="Device: pi (Raspberry Pi, 64-bit OS)."),
    model: Model = None,
    force: Force = False,
):
    """A folder for the device: model, sidecar, labels, pi_infer.py, requirements and README (default model: RUN/exports/int8.tflite)."""
    result = api.bundle(run, out, target=target, model=model, force=force)
    typer.echo(f"bundle for {result.target} → {result.path}: {', '.join(result.files)}")
    typer.echo(f"next: copy it to the Pi and follow {result.path / 'README.md'}")
