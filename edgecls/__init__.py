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

import sys
import types

__version__ = "0.1.0"

__all__ = ["train", "evaluate", "quantize", "prune", "export", "optimize", "predict", "bench", "bundle", "gradcam",
           "report", "list_models"]


def __getattr__(name: str):
    # PEP 562: the API module (and whatever it imports) loads when a function is first looked up.
    if name in __all__:
        from edgecls import api

        return getattr(api, name)
    raise AttributeError(f"module 'edgecls' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *__all__])


class _Package(types.ModuleType):
    def __setattr__(self, name, value):
        # Four API functions share their name with a subpackage (train, optimize, bench, report).
        # Importing ``edgecls.train.trainer`` binds the subpackage here, which would hide
        # ``edgecls.train()``; the subpackage stays reachable through imports (sys.modules).
        if name in __all__ and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
