"""Loading Keras model files safely and reading the labels that go with them."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from edgecls.errors import EdgeclsError, ModelFileError, first_line
from edgecls.run_folder import LABELS, RunFolder

# Layers whose config names Python code to run. Safe mode stops pickled ``lambda`` bytecode, but a
# Lambda naming a plain function is still resolved from any module already imported (os, shutil,
# ...); edgecls models never contain one, so a model file that does is refused before Keras sees it.
CODE_LAYERS = frozenset({"Lambda"})
_MAX_CONFIG_BYTES = 64 * 2**20


def load_keras_model(path, *, compile: bool = False):
    """Load a .keras file in Keras safe mode, refusing any file whose layers carry Python code."""
    import edgecls.models.layers  # noqa: F401  (registers edgecls' custom layers)
    import edgecls.models.mobilenet_v3  # noqa: F401  (ShiftedReLU6: without it a fresh process cannot load MobileNetV3)
    from edgecls.tf import keras

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    if path.suffix != ".keras" or not zipfile.is_zipfile(path):
        raise ModelFileError(f"not a Keras model file (.keras zip): {path}")
    refuse_code_layers(path)
    try:
        return keras.models.load_model(path, safe_mode=True, compile=compile)
    except Exception as err:  # noqa: BLE001 - Keras raises many kinds for a damaged file
        first = first_line(err)
        if "safe_mode" in str(err):
            raise ModelFileError(f"refused {path}: it holds Python code that Keras safe mode does not run "
                                 f"({first[:120]})") from None
        raise ModelFileError(f"cannot load model {path}: {first}") from None


def refuse_code_layers(path) -> None:
    """Raise ModelFileError if the .keras file at ``path`` has a layer that runs stored code."""
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo("config.json")
            if info.file_size > _MAX_CONFIG_BYTES:
                raise ModelFileError(f"cannot load model {path}: its config.json declares {info.file_size} bytes")
            config = json.loads(archive.read(info).decode("utf-8"))
    except KeyError:
        raise ModelFileError(f"not a Keras model file (no config.json inside): {path}") from None
    except ModelFileError:
        raise
    # Damaged zips and JSON fail in many ways; nesting deep enough for RecursionError is one of them.
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError) as err:
        raise ModelFileError(f"cannot load model {path}: {first_line(err)}") from None
    found = _code_layer_names(config)
    if found:
        raise ModelFileError(f"refused {path}: layer '{found[0]}' is a Lambda layer (stored Python code), which "
                             "edgecls never loads; rebuild the model with ordinary layers")


def _code_layer_names(config) -> list[str]:
    found, pending = [], [config]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            if node.get("class_name") in CODE_LAYERS:
                inner = node.get("config")
                found.append(str(inner.get("name", node["class_name"])) if isinstance(inner, dict) else "?")
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return found



def read_labels(folder) -> list[str]:
    path = RunFolder(folder).labels
    if not path.is_file():
        raise EdgeclsError(f"no {LABELS} in {folder}: is this a run folder?")
    labels = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(labels) < 2:
        raise EdgeclsError(f"{path} lists fewer than two classes")
    return labels
