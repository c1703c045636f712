"""Writes that never leave a half-written file where a good one was expected."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from edgecls.errors import EdgeclsError

TEMP_PREFIX = ".tmp-"
_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it over ``target`` only on success.

    The temporary file lives in the same folder so the final ``os.replace`` is atomic. Its name
    ends with the target's whole name because writers choose a format by it (Keras tells
    ``.weights.h5`` from ``.h5``; matplotlib reads ``.png``).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=f"-{target.name}", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp's 0600 would make models unreadable to others
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except OSError as exc:
        if exc.errno in _DISK_FULL:
            # The user's disk, not a bug: one line, and the previous file is still there.
            raise EdgeclsError(f"no space left on the disk to write {target} (the previous file, if any, "
                               "is unchanged)") from exc
        raise
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Delete temporary files that ``atomic_path`` left in ``folder`` (recursively) when its
    process was killed; returns them. Only for folders no other process is writing to."""
    removed = []
    for path in sorted(Path(folder).rglob(f"{TEMP_PREFIX}*")):
        if path.is_file() and not path.is_symlink():
            path.unlink(missing_ok=True)
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
