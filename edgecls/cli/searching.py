"""The ``search`` command: parse, call ``edgecls.api.search``, print the choice (or the closest miss)."""

from __future__ import annotations

from pathlib import Path

import typer

from edgecls import api
from edgecls.cli.optimizing import NOT_WITHIN_BUDGET_EXIT_CODE
from edgecls.cli.options import DeviceOption, DevicePython, Json, NoProgress, Quiet, Resume, SshConfig, Threads, verbosity
from edgecls.cli.output import emit_json, stdout_to_stderr


def search(
    data: str = typer.Argument(..., metavar="DATA", help="Class folders, a folder with train/ (val/) test/, or an archive of either."),
    out: Path = typer.Option(..., "--out", "-o", help="The search folder: study.db, feasibility.json, trials/, search.json, exports/best.*."),
    max_latency_ms: float = typer.Option(..., "--max-latency-ms", help="Latency limit per image on the target (median, ms)."),
    max_size_kb: float | None = typer.Option(None, "--max-size-kb", help="Model file size limit (KB)."),
    device: DeviceOption = None,
    threads: Threads = 1,
    time_budget: str | None = typer.Option(None, "--time-budget", help="Stop training within one epoch of this long (seconds, "
                                                                       "or 90s, 30m, 2h); without it each feasible "
                                                                       "configuration is trained once."),
    space: Path | None = typer.Option(None, "--space", help="A YAML file narrowing or widening the space (architectures, "
                                                            "alphas, img_sizes, weights, epochs, recipe options)."),
    storage: str | None = typer.Option(None, "--storage", help="The study's database URL (default: sqlite in OUT/study.db)."),
    also_latency_ms: list[float] = typer.Option([], "--also-latency-ms", help="Another latency limit to name the best "
                                                                              "model under (repeatable)."),
    resume: Resume = False,
    device_python: DevicePython = "python3",
    ssh_config: SshConfig = None,
    json_out: Json = False,
    quiet: Quiet = False,
    no_progress: NoProgress = False,
):
    """The most accurate model from DATA that meets --max-latency-ms (and --max-size-kb) on the target; writes OUT/exports/best.*."""
    verbose = verbosity(quiet, no_progress)
    with stdout_to_stderr(json_out):
        result = api.search(data, out, max_latency_ms=max_latency_ms, max_size_kb=max_size_kb, device=device,
                            threads=threads, time_budget=time_budget, space=space, storage=storage, resume=resume,
                            also_latency_ms=also_latency_ms, device_python=device_python, ssh_config=ssh_config,
                            verbose=verbose)
    if json_out:
        emit_json(result)
    typer.echo(result.summary_line(), err=json_out or not result.within_limits)
    if not result.within_limits:
        raise typer.Exit(NOT_WITHIN_BUDGET_EXIT_CODE)
