"""The one place that draws progress bars: on stderr, so stdout stays clean for tables and JSON,
and transient, so a finished bar leaves nothing behind in the terminal or a log."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def _progress(enabled: bool, *, remaining: bool = True) -> Progress:
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    if remaining:
        columns.append(TimeRemainingColumn())
    return Progress(*columns, console=Console(stderr=True), transient=True, disable=not enabled)


@contextlib.contextmanager
def progress_bar(description: str, total: int | None, *, enabled: bool = True) -> Iterator[Callable[..., None]]:
    """A bar of ``total`` steps (None: unknown) while the block runs; yields ``advance(steps=1)``."""
    progress = _progress(enabled)
    with progress:
        task = progress.add_task(description, total=total)

        def advance(steps: int = 1) -> None:
            progress.advance(task, steps)

        yield advance


class PhasedProgress:
    """One bar per row of work (a model on a runtime), whose label names the row's current phase.

    Use as a context manager: ``start_row(name)`` replaces the previous row's bar, ``plan(total)``
    sets its length once known, ``phase(name)`` relabels it, ``advance(steps)`` moves it.
    """

    def __init__(self, enabled: bool = True):
        self._progress = _progress(enabled, remaining=False)
        self._task = None
        self._row = ""

    def __enter__(self) -> PhasedProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.__exit__(*exc)

    def start_row(self, description: str) -> None:
        if self._task is not None:
            self._progress.remove_task(self._task)
        self._row = description
        self._task = self._progress.add_task(description, total=None)

    def plan(self, total: int) -> None:
        self._progress.update(self._task, total=total, completed=0)

    def phase(self, name: str) -> None:
        self._progress.update(self._task, description=f"{self._row}: {name}")

    def advance(self, steps: int = 1) -> None:
        self._progress.advance(self._task, steps)
