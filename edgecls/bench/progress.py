"""The progress bar shown while ``edgecls bench`` runs (on stderr, gone when it ends)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class BenchProgress:
    """One bar per (model, runtime) row; the description names the row and its current phase."""

    def __init__(self, enabled: bool = True):
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TimeElapsedColumn(), console=Console(stderr=True), transient=True,
                                  disable=not enabled)
        self._task = None
        self._row = ""

    def __enter__(self):
        self._progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self._progress.__exit__(*exc)

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
