"""One writer per run folder: an advisory lock that every command writing into a run holds.

Two ``edgecls quantize`` on one run used to interleave their replaces, leaving a model whose
sidecar described the other's file. ``fcntl.flock`` on ``<run>/.edgecls.lock`` serialises them: a
second writer waits (saying for whom) or, asked not to, stops with one line naming the holder's
PID. The kernel drops the lock when its holder dies, however it dies, so a killed command never
leaves a run locked; the PID in the file is only for messages. While it holds the lock a writer
is alone in the folder, so it also clears the ``.tmp-*`` files that a killed writer left (and
completes a model's publish that was killed between its two renames, edgecls.publish).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from edgecls.errors import EdgeclsError
from edgecls.faults import reached
from edgecls.fsutil import check_writable_folder, remove_stale_temps

LOCK_FILE = ".edgecls.lock"

try:
    import fcntl
except ImportError:  # Windows: no flock; msvcrt's locks are mandatory and per byte range, not worth it here
    fcntl = None


class RunBusyError(EdgeclsError):
    """Another process is writing into the run folder and the caller asked not to wait."""


# path -> how deep this process holds it: a command that calls another (optimize runs quantize) locks once.
_depth: dict[Path, int] = {}
_guard = threading.Lock()


@contextlib.contextmanager
def writing(run_dir: str | os.PathLike, *, wait: bool = True, clean: bool = True) -> Iterator[Path]:
    """Hold the run folder's write lock for the ``with`` block (re-entrant within a process).

    ``wait=False``: if another process holds it, raise :class:`RunBusyError` naming its PID.
    ``clean``: remove ``.tmp-*`` leftovers of killed writers once the lock is ours. The folder is
    created if missing, and a folder that cannot be written is a one-line error here, before work.
    """
    folder = check_writable_folder(run_dir, what="run folder").resolve()
    with _guard:
        held = folder in _depth
        if held:
            _depth[folder] += 1
    if held:
        try:
            yield folder
        finally:
            with _guard:
                _depth[folder] -= 1
        return
    fd = _acquire(folder, wait)
    with _guard:
        _depth[folder] = 1
    try:
        if clean:
            from edgecls.publish import finish_interrupted

            finish_interrupted(folder)  # a publish killed between its two renames is completed, not undone
            remove_stale_temps(folder)
        yield folder
    finally:
        with _guard:
            _depth.pop(folder, None)
        os.close(fd)  # closing the descriptor releases the flock


def _acquire(folder: Path, wait: bool) -> int:
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    if fcntl is None:
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        if not wait:
            os.close(fd)
            raise RunBusyError(f"{folder} is being written by another edgecls process ({holder}); "
                               "wait for it to finish, or leave out --no-wait to wait") from None
        print(f"note: waiting for {holder} to finish writing {folder}", file=sys.stderr, flush=True)
        fcntl.flock(fd, fcntl.LOCK_EX)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    reached("lock-held")
    return fd


def _holder(fd: int) -> str:
    try:
        pid = int(os.pread(fd, 32, 0).split()[0])
    except (OSError, ValueError, IndexError):
        return "PID unknown"
    return f"PID {pid}"


def holds(run_dir: str | os.PathLike) -> bool:
    """Whether this process holds the run folder's write lock now."""
    return Path(run_dir).resolve() in _depth
