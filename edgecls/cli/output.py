"""How commands print: human lines on stdout, notes on stderr, and ``--json`` as JSON alone on stdout."""

from __future__ import annotations

import contextlib
import json
import os
import sys

import typer

from edgecls.results import jsonable


def emit_json(value) -> None:
    """``value`` (a result, a list of records, a dict) as indented JSON on stdout."""
    typer.echo(json.dumps(jsonable(value), indent=2))


def notes(lines) -> None:
    for line in lines:
        typer.echo(line, err=True)


@contextlib.contextmanager
def stdout_to_stderr(enabled: bool = True):
    """While enabled, everything written to stdout goes to stderr, so ``--json`` output stays parseable.

    Library code prints tables and Keras prints epochs on stdout; the file descriptor is redirected
    too, for whatever native code writes there.
    """
    if not enabled:
        yield
        return
    sys.stdout.flush()
    saved = None
    try:
        fd = sys.stdout.fileno()
        err_fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # a captured or replaced stream has no descriptor
        fd = None
    if fd is not None:
        saved = os.dup(fd)
        os.dup2(err_fd, fd)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stderr.flush()
        if saved is not None:
            os.dup2(saved, fd)
            os.close(saved)


def print_metrics(metrics: dict, where) -> None:
    """One line: top-1, top-5, macro F1, training time, test images and where the reports are."""
    parts = [f"top-1 {metrics['accuracy']:.4f}"]
    if metrics.get("top5_accuracy") is not None:
        parts.append(f"top-5 {metrics['top5_accuracy']:.4f}")
    parts.append(f"macro F1 {metrics['macro_f1']:.4f}")
    if metrics.get("train_seconds"):
        parts.append(f"trained in {metrics['train_seconds']:.0f} s")
    typer.echo(f"{', '.join(parts)} on {metrics['num_samples']} test images → {where}")


def wide_console(renderable, *, stderr: bool = False):
    """A rich Console wide enough for ``renderable`` (lines wrap rather than cut numbers)."""
    from rich.console import Console

    console = Console(stderr=stderr)
    needed = console.measure(renderable, options=console.options.update_width(1000)).maximum
    if needed > console.width:
        console = Console(width=needed, stderr=stderr)
    return console
