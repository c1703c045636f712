"""MediaPipe Tasks' ImageClassifier as a client of an edgecls .tflite: what an app would get on the same pixels.

``bench --parity`` compares it with edgecls' own runtimes. MediaPipe runs in a Python of its own
(``mediapipe_worker.py``, which needs only numpy and mediapipe): MediaPipe needs absl-py 2 and
tensorflow-model-optimization pins absl-py 1, so pip will not put both in one environment. That
Python is ``$EDGECLS_MEDIAPIPE_PYTHON``, else this one when mediapipe is installed here.
Images are handed over as decoded RGB arrays already at the model's size, so MediaPipe resizes
nothing and both see the same pixels. MediaPipe reports a score per category index: probabilities
for a float model ending in softmax, logits for an int8 one (edgecls.converters.tflite_metadata),
which are turned into probabilities here as edgecls' runtimes do, so |Δ probability| compares like
with like.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

PYTHON_ENV = "EDGECLS_MEDIAPIPE_PYTHON"
WORKER = Path(__file__).with_name("mediapipe_worker.py")
CHECK = "import mediapipe.tasks.python.vision"


def python() -> str | None:
    """The Python that runs MediaPipe (see the module's doc), or None when there is none."""
    given = os.environ.get(PYTHON_ENV)
    if given:
        return given if _imports_mediapipe(given) else None
    import importlib.util

    # found without importing it here: importing MediaPipe imports TensorFlow where that is installed too
    return sys.executable if importlib.util.find_spec("mediapipe") is not None and _imports_mediapipe(sys.executable) \
        else None


def available() -> bool:
    """Whether a Python with MediaPipe Tasks is there to ask."""
    return python() is not None


def why_not() -> str:
    """One line on why :func:`available` is False and how to fix it."""
    given = os.environ.get(PYTHON_ENV)
    if given:
        return f"${PYTHON_ENV}={given} cannot import MediaPipe Tasks ({_import_error(given)})"
    return (f"MediaPipe Tasks is not installed: make an environment for it (python -m venv mp && mp/bin/pip install "
            f"mediapipe) and set {PYTHON_ENV}=mp/bin/python")


@functools.lru_cache(maxsize=8)
def _imports_mediapipe(executable: str) -> bool:
    return _import_error(executable) == ""


@functools.lru_cache(maxsize=8)
def _import_error(executable: str) -> str:
    try:
        done = subprocess.run([executable, "-c", CHECK], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as err:
        return str(err)
    if done.returncode == 0:
        return ""
    lines = done.stderr.strip().splitlines()
    return lines[-1] if lines else f"exit code {done.returncode}"


def probabilities(model_path, images: np.ndarray, num_classes: int, *, logits: bool) -> np.ndarray:
    """(n, num_classes) probabilities MediaPipe's ImageClassifier gives for uint8 RGB ``images`` (n, h, w, 3)."""
    from edgecls.errors import EdgeclsError

    executable = python()
    if executable is None:
        raise EdgeclsError(why_not())
    with tempfile.TemporaryDirectory(prefix="edgecls-mediapipe-") as tmp:
        given, answered = Path(tmp) / "images.npy", Path(tmp) / "scores.npy"
        np.save(given, np.ascontiguousarray(images, dtype=np.uint8))
        done = subprocess.run([executable, str(WORKER), str(model_path), str(given), str(answered), str(num_classes)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines()
            raise EdgeclsError(f"MediaPipe's ImageClassifier failed on {model_path}: "
                               f"{lines[-1] if lines else f'exit code {done.returncode}'}")
        scores = np.load(answered, allow_pickle=False).astype(np.float64)
    if logits:
        scores = np.exp(scores - scores.max(axis=1, keepdims=True))
        scores /= scores.sum(axis=1, keepdims=True)
    return scores
