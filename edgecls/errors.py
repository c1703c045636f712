"""Errors a user can cause and fix. The CLI prints them as one line and exits non-zero."""


class EdgeclsError(Exception):
    """A problem with the user's input (paths, data, options, model files), not a bug."""

    exit_code = 2


class DataError(EdgeclsError):
    """The dataset cannot be used as given (missing, empty, one class, unsafe archive...)."""


class ModelFileError(EdgeclsError):
    """A model file is missing, corrupt or of an unknown kind."""
