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
    max_latency_ms: float | None = typer.Option(None, "--max-latency-ms", help="Latency limit per image on the target "
                                                                            "(median, ms); required unless --as-fast-as or --join."),
    max_size_kb: float | None = typer.Option(None, "--max-size-kb", help="Model file size limit (KB)."),
    as_fast_as: Path | None = typer.Option(None, "--as-fast-as", help="A model file to be at least as fast as on the "
                                                                      "target (timed with the finalists, side by side)."),
    device: DeviceOption = None,
    threads: Threads = 1,
    time_budget: str | None = typer.Option(None, "--time-budget", help="Stop training within one epoch of this long (seconds, "
                                                                       "or 90s, 30m, 2h); without it each feasible "
                                                                       "configuration is trained once."),
    space: Path | None = typer.Option(None, "--space", help="A YAML file narrowing or widening the space (architectures, "
                                                            "alphas, img_sizes, weights, epochs, recipe options)."),
    storage: str | None = typer.Option(None, "--storage", help="The study's database URL (default: sqlite in OUT/study.db); "
                                                                "postgresql://user@host/db lets other machines --join it."),
    join: str | None = typer.Option(None, "--join", help="Work on the study at this database URL (started elsewhere with "
                                                         "--storage): train its trials into OUT until its budget ends."),
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
                            threads=threads, as_fast_as=as_fast_as, time_budget=time_budget, space=space, storage=storage,
                            join=join, resume=resume,
                            also_latency_ms=also_latency_ms, device_python=device_python, ssh_config=ssh_config,
                            verbose=verbose)
    if json_out:
        emit_json(result)
    within = getattr(result, "within_limits", True)  # a --join worker chooses nothing: its job is done
    typer.echo(result.summary_line(), err=json_out or not within)
    if not within:
        raise typer.Exit(NOT_WITHIN_BUDGET_EXIT_CODE)
