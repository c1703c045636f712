"""The one place that imports TensorFlow.

tensorflow-model-optimization only works with Keras 2, so ``TF_USE_LEGACY_KERAS=1`` must be set
before TensorFlow is first imported; everything in edgecls takes ``tf`` and ``keras`` from here.
"""

from __future__ import annotations

import contextlib
import os
import sys

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@contextlib.contextmanager
def _quiet_native_stderr():
    # TensorFlow's C++ side prints CUDA/oneDNN notices straight to fd 2 while it loads, before
    # TF_CPP_MIN_LOG_LEVEL is read. Users asked for a classifier, not for those; Python-level
    # import errors still surface because they are raised after fd 2 is restored.
    if os.environ.get("EDGECLS_DEBUG") or not hasattr(sys.stderr, "fileno"):
        yield
        return
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        sys.stderr.flush()
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


with _quiet_native_stderr():
    import tensorflow as tf  # noqa: E402
    import tf_keras as keras  # noqa: E402

    tf.config.list_physical_devices("GPU")  # triggers the CUDA probe while stderr is quiet

tf.get_logger().setLevel("ERROR")

__all__ = ["tf", "keras"]
