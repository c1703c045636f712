"""A progress bar on stderr for long model work (prediction over views, Grad-CAM over images)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


@contextlib.contextmanager
def progress_bar(description: str, total: int, *, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """Yields ``advance(steps=1)``; the bar disappears when the work ends (stdout stays clean)."""
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TimeRemainingColumn(), console=Console(stderr=True), transient=True, disable=not enabled)
    with progress:
        task = progress.add_task(description, total=total)
        yield lambda steps=1: progress.advance(task, steps)
