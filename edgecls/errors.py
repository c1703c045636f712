"""Errors a user can cause and fix. The CLI prints them as one line and exits non-zero."""

import errno
import os


class EdgeclsError(Exception):
    """A problem with the user's input (paths, data, options, model files), not a bug."""

    exit_code = 2


class DataError(EdgeclsError):
    """The dataset cannot be used as given (missing, empty, one class, unsafe archive...)."""


class ModelFileError(EdgeclsError):
    """A model file is missing, corrupt or of an unknown kind."""


class UnwritableError(EdgeclsError):
    """An output cannot be written where the user asked: permissions, a read-only or full disk, a path in the way."""

    reason = ""  # what the file system said, without the path


DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})
# What the user's file system says about the user's paths, not bugs of edgecls.
USER_ERRNOS = DISK_FULL_ERRNOS | {errno.EACCES, errno.EPERM, errno.EROFS, errno.EEXIST, errno.ENOTDIR, errno.EISDIR,
                                  errno.ENAMETOOLONG, errno.ENOTEMPTY}


def is_user_os_error(err: BaseException) -> bool:
    return isinstance(err, OSError) and err.errno in USER_ERRNOS


def unwritable(err: OSError, path=None) -> UnwritableError:
    """The one-line error for an OS error met writing ``path`` (default: the path the error names)."""
    target = os.fspath(path) if path is not None else (err.filename or "")
    reason = err.strerror or type(err).__name__
    if err.errno in DISK_FULL_ERRNOS:
        reason = "no space left on the disk"
    error = UnwritableError(f"cannot write {target}: {reason}" if target else f"cannot write: {reason}")
    error.reason = reason
    return error


def first_line(err: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type name when empty), cut to ``limit`` characters.

    Library errors (converters, protobuf, Keras) often span pages; a user needs only the line
    that names the problem.
    """
    lines = str(err).strip().splitlines()
    return (lines[0].strip() if lines else type(err).__name__)[:limit]


class DeviceError(EdgeclsError):
    """The device given with ``--device`` cannot be used: unreachable, an unknown host key, a refused
    login, a missing runtime there, or a command there that failed or ran out of time."""


class DeviceLostError(DeviceError):
    """The connection to the device dropped while a command ran there (a search can go on with --resume)."""
