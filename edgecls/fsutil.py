"""Writes that never leave a half-written file where a good one was expected."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from edgecls.errors import DISK_FULL_ERRNOS, UnwritableError, is_user_os_error, unwritable

TEMP_PREFIX = ".tmp-"


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it over ``target`` only on success.

    The temporary file is :func:`temp_beside` the target. What the file system refuses (no
    permission, read-only, full, a path in the way) is a one-line error naming ``target``, never
    the temporary name; the previous file, if any, is unchanged.
    """
    target = Path(target)
    tmp_path = temp_beside(target)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except OSError as exc:
        raise user_error(exc, target) from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def temp_beside(target: str | os.PathLike, *, folder: bool = False) -> Path:
    """A new empty temporary file (or folder) beside ``target``, named ``.tmp-XXXXXXXX-<target's name>``.

    Beside, so that renaming it over ``target`` is atomic; ending with the target's name because
    writers choose a format by it (Keras tells ``.weights.h5`` from ``.h5``; matplotlib reads
    ``.png``). A folder that refuses it is a one-line error naming ``target``.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if folder:
            return Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, suffix=f"-{target.name}", dir=target.parent))
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=f"-{target.name}", dir=target.parent)
    except OSError as exc:
        raise user_error(exc, target) from None
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would make models unreadable to others
    return Path(tmp)


def final_name(temp: str | os.PathLike) -> str:
    """The name of the file a :func:`temp_beside` path stands in for."""
    return Path(temp).name[len(TEMP_PREFIX):].split("-", 1)[1]


def user_error(exc: OSError, target: Path) -> Exception:
    """``exc`` as the one-line error naming ``target`` when the user can fix it (see edgecls.errors), else ``exc``."""
    if not is_user_os_error(exc):
        return exc
    error = unwritable(exc, target)
    if exc.errno in DISK_FULL_ERRNOS:
        error.args = (f"{error.args[0]} (the previous file, if any, is unchanged)",)
    return error


def check_writable_folder(folder: str | os.PathLike, *, what: str = "output folder") -> Path:
    """Fail now, in one line, if files cannot be created in ``folder`` (made if missing).

    For commands that know their output before long work starts: a path that is a file, a
    read-only file system or a folder without write permission is said before, not after, a
    conversion or a training.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UnwritableError(f"{what} {folder} exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix="-probe", dir=folder)
    except OSError as exc:
        raise unwritable(exc, folder) from None
    os.close(fd)
    os.unlink(probe)
    return folder


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files and folders that writes left in ``folder`` (recursively) when
    their process was killed; returns them. Only for folders no other process is writing to
    (``edgecls.run_lock.writing`` guarantees that for a run folder)."""
    removed = []
    for path in sorted(Path(folder).rglob(f"{TEMP_PREFIX}*")):
        if path.is_symlink() or any(parent in removed for parent in path.parents):
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.is_file():
            path.unlink(missing_ok=True)
        else:
            continue
        removed.append(path)
    return removed


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_text(target: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``target`` through a temporary file and a rename; returns the path."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def write_json(target: str | os.PathLike, data) -> Path:
    """Write ``data`` as indented JSON, atomically (see :func:`write_text`); returns the path."""
    return write_text(target, json.dumps(data, indent=2, sort_keys=False, default=_jsonable) + "\n")


def _jsonable(value):
    # numpy scalars and Paths turn up in metrics and configs.
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
