"""Errors a user can cause and fix. The CLI prints them as one line and exits non-zero."""


class EdgeclsError(Exception):
    """A problem with the user's input (paths, data, options, model files), not a bug."""

    exit_code = 2


class DataError(EdgeclsError):
    """The dataset cannot be used as given (missing, empty, one class, unsafe archive...)."""


class ModelFileError(EdgeclsError):
    """A model file is missing, corrupt or of an unknown kind."""


def first_line(err: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type name when empty), cut to ``limit`` characters.

    Library errors (converters, protobuf, Keras) often span pages; a user needs only the line
    that names the problem.
    """
    lines = str(err).strip().splitlines()
    return (lines[0].strip() if lines else type(err).__name__)[:limit]
