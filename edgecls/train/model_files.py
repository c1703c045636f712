"""Loading Keras model files safely and reading the labels that go with them."""

from __future__ import annotations

import zipfile
from pathlib import Path

from edgecls.errors import EdgeclsError, ModelFileError

LABELS_FILE = "labels.txt"


def load_keras_model(path, *, compile: bool = False):
    """Load a .keras file in Keras safe mode: no Lambda bytecode is ever deserialised."""
    from edgecls.tf import keras
    import edgecls.train.layers  # noqa: F401  (registers edgecls' custom layers)
    import edgecls.train.schedules  # noqa: F401

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    if path.suffix != ".keras" or not zipfile.is_zipfile(path):
        raise ModelFileError(f"not a Keras model file (.keras zip): {path}")
    try:
        return keras.models.load_model(path, safe_mode=True, compile=compile)
    except Exception as err:  # noqa: BLE001 - Keras raises many kinds for a damaged file
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise ModelFileError(f"cannot load model {path}: {first}") from None


def read_labels(folder) -> list[str]:
    path = Path(folder) / LABELS_FILE
    if not path.is_file():
        raise EdgeclsError(f"no {LABELS_FILE} in {folder}: is this a run folder?")
    labels = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(labels) < 2:
        raise EdgeclsError(f"{path} lists fewer than two classes")
    return labels
