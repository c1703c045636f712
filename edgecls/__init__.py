"""edgecls: image folders to a fast, small int8 classifier for edge devices.

The public API (``edgecls.train``, ``quantize``, ``predict``, ``bench``... see ``__all__``) lives in
:mod:`edgecls.api` and its result types in :mod:`edgecls.results`. They are loaded on first use, so
``import edgecls`` stays cheap: TensorFlow is only imported through ``edgecls.tf``, inside the calls
that need it.

Example::

    >>> import edgecls
    >>> "tiny_cnn" in edgecls.list_models()
    True
"""

__version__ = "0.1.0"

__all__ = ["train", "evaluate", "quantize", "prune", "export", "optimize", "search", "predict", "bench", "bundle",
           "gradcam", "report", "list_models", "check_device"]


def __getattr__(name: str):
    # PEP 562: the API module (and whatever it imports) loads when a function is first looked up.
    if name in __all__:
        from edgecls import api

        return getattr(api, name)
    raise AttributeError(f"module 'edgecls' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *__all__])
