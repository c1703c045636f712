"""The ``quantize``, ``export``, ``prune`` and ``optimize`` commands: parse, call ``edgecls.api``, print."""

from __future__ import annotations

import typer

from edgecls import api, formats
from edgecls.cli.options import (
    BatchSize,
    Calibration,
    DeviceOption,
    DevicePython,
    Epochs,
    FineTuneOptimizer,
    Json,
    Lr,
    Model,
    NoProgress,
    NoTensorboard,
    NoWait,
    Quiet,
    Resume,
    RunArg,
    SshConfig,
    Threads,
    tensorboard_choice,
    verbosity,
)
from edgecls.cli.output import emit_json, stdout_to_stderr

NOT_WITHIN_BUDGET_EXIT_CODE = 3


def quantize(
    run: RunArg,
    int8: bool = typer.Option(False, "--int8", help="Full-integer int8 (post-training, calibrated)."),
    qat: bool = typer.Option(False, "--qat", help="Quantization-aware training, then int8."),
    float16: bool = typer.Option(False, "--float16", help="Float16 weights."),
    dynamic: bool = typer.Option(False, "--dynamic", help="Dynamic-range (int8 weights, float activations)."),
    io: str = typer.Option("uint8", "--io", help="int8 model input/output type: uint8 | int8 | float."),
    calibration: Calibration = api.DEFAULT_CALIBRATION,
    epochs: Epochs = 3,
    lr: Lr = None,
    fine_tune_optimizer: FineTuneOptimizer = api.DEFAULT_FINE_TUNE_OPTIMIZER,
    batch_size: BatchSize = None,
    model: Model = None,
    preserve_sparsity: bool = typer.Option(False, "--preserve-sparsity",
                                           help="With --qat on a pruned model: keep its zeros (prune-preserving QAT)."),
    no_tensorboard: NoTensorboard = False,
    json_out: Json = False,
    quiet: Quiet = False,
    no_progress: NoProgress = False,
    no_wait: NoWait = False,
):
    """Quantize a run: writes RUN/exports/<variant>.tflite + .json and prints the accuracy table."""
    # The command keeps asking for a variant explicitly; the API defaults to int8.
    with stdout_to_stderr(json_out):
        records = api.quantize(run, int8=int8, qat=qat, float16=float16, dynamic=dynamic, io=io,
                               calibration=calibration, epochs=epochs, lr=lr, batch_size=batch_size, model=model,
                               preserve_sparsity=preserve_sparsity, fine_tune_optimizer=fine_tune_optimizer,
                               tensorboard=tensorboard_choice(no_tensorboard),
                               wait=not no_wait, verbose=verbosity(quiet, no_progress))
    _print_records(records, json_out, quiet or no_progress)


def export(
    run: RunArg,
    format: list[str] = typer.Option(["tflite"], "--format", "-f", help=f"{formats.help_text(formats.export_names(), extra=('all',))} (repeatable)."),
    int8: bool = typer.Option(False, "--int8", help="Also the int8 variant of each format that has one."),
    opset: int = typer.Option(17, help="ONNX opset."),
    calibration: Calibration = api.DEFAULT_CALIBRATION,
    model: Model = None,
    json_out: Json = False,
    quiet: Quiet = False,
    no_progress: NoProgress = False,
    no_wait: NoWait = False,
):
    """Export a run to TFLite, ONNX and/or SavedModel, each with a sidecar and measured accuracy."""
    with stdout_to_stderr(json_out):
        records = api.export(run, format, int8=int8, opset=opset, calibration=calibration, model=model,
                             wait=not no_wait, verbose=verbosity(quiet, no_progress))
    _print_records(records, json_out, quiet or no_progress)


def prune(
    run: RunArg,
    sparsity: float = typer.Option(0.5, help="Target fraction of zero weights."),
    epochs: Epochs = 3,
    lr: Lr = None,
    fine_tune_optimizer: FineTuneOptimizer = api.DEFAULT_FINE_TUNE_OPTIMIZER,
    batch_size: BatchSize = None,
    for_xnnpack: bool = typer.Option(False, "--for-xnnpack", help="Prune for XNNPACK sparse inference; export sparse fp32."),
    no_tensorboard: NoTensorboard = False,
    json_out: Json = False,
    quiet: Quiet = False,
    no_progress: NoProgress = False,
    no_wait: NoWait = False,
):
    """Magnitude-prune a run; writes exports/pruned.keras, a pruned TFLite and the sparsity report."""
    with stdout_to_stderr(json_out):
        result = api.prune(run, sparsity=sparsity, epochs=epochs, lr=lr, batch_size=batch_size,
                           for_xnnpack=for_xnnpack, fine_tune_optimizer=fine_tune_optimizer,
                           tensorboard=tensorboard_choice(no_tensorboard),
                           wait=not no_wait, verbose=verbosity(quiet, no_progress))
    _print_records(result, json_out, quiet or no_progress)


def optimize(
    run: RunArg,
    max_drop: float = typer.Option(0.5, "--max-drop", help="Largest top-1 loss allowed against float, in points "
                                                           "(judged on the validation split)."),
    objective: str = typer.Option("latency", "--objective", help="latency | size: what the search minimises."),
    runtime: str = typer.Option("tflite", "--runtime", help=f"{formats.help_text(formats.search_names())}: where candidates are timed."),
    time_budget: str | None = typer.Option(None, "--time-budget", help="Stop the search after this long "
                                                                       "(seconds, or 90s, 30m, 1h)."),
    threads: Threads = 1,
    resume: Resume = False,
    model: Model = None,
    fine_tune_optimizer: FineTuneOptimizer = api.DEFAULT_FINE_TUNE_OPTIMIZER,
    device: DeviceOption = None,
    device_python: DevicePython = "python3",
    ssh_config: SshConfig = None,
    json_out: Json = False,
    quiet: Quiet = False,
    no_progress: NoProgress = False,
    no_wait: NoWait = False,
):
    """Search int8, QAT and pruned variants for the fastest (or smallest) within --max-drop; writes exports/best.*."""
    verbose = verbosity(quiet, no_progress)
    with stdout_to_stderr(json_out):
        result = api.optimize(run, max_drop=max_drop, objective=objective, runtime=runtime,
                              time_budget=time_budget, threads=threads, resume=resume, model=model,
                              fine_tune_optimizer=fine_tune_optimizer, device=device, device_python=device_python,
                              ssh_config=ssh_config, wait=not no_wait, verbose=verbose)
    if json_out:
        emit_json(result)
    if not verbose:  # a verbose search ends with its leaderboard and this line already
        typer.echo(result.summary_line(), err=json_out or not result.within_budget)
    if not result.within_budget:
        raise typer.Exit(NOT_WITHIN_BUDGET_EXIT_CODE)


def _print_records(result, json_out: bool, quiet: bool) -> None:
    # Verbose runs print the library's accuracy table; quiet ones still say what was written.
    if json_out:
        emit_json(result)
    elif quiet:
        for record in getattr(result, "records", result):
            top1 = "–" if record.accuracy is None else f"{record.accuracy:.4f}"
            typer.echo(f"{record.variant}: {record.path} (top-1 {top1})")

