"""The sidecar: ``<variant>.json`` beside every exported model, so preprocessing travels with it.

Everything a runtime needs to feed the model and read its answer — labels, input size and type,
resize method, quantization, whether the output is logits or probabilities — plus where the model
came from, its accuracy measured at export, the tool versions that made it, and the size and
sha256 of the bytes it describes. It is published with its model as one (edgecls.publish), also
embedded in .tflite/.onnx files (edgecls.model_metadata); ``read_model_sidecar`` falls back to that
copy when no JSON is beside the file, and a JSON whose sha256 is not the file's is refused as
stale. Nothing here imports TensorFlow: the deploy side reads sidecars too.
"""

from __future__ import annotations

import datetime as _dt
import gzip
import hashlib
import json
from pathlib import Path

from edgecls.errors import ModelFileError

SCHEMA = "edgecls.sidecar/1"
SHA_KEY = "sha256"  # of the model's bytes as written (edgecls.publish)
RESIZE_METHOD = "pil-bilinear-squash"  # edgecls.data.images.RESIZE_METHOD, kept importable without PIL


def check_outputs_match_labels(outputs: int, labels, model_path, *, source: str = "its sidecar") -> None:
    """The one check, wherever a model is loaded or written, that it answers for the labels it goes with.

    A model whose output count differs from its labels (another run's file copied in, a replaced
    model.keras) would otherwise be exported, bundled and shipped, and fail only on the device.
    """
    count = len(labels)
    if int(outputs) != count:
        raise ModelFileError(f"{model_path} has {int(outputs)} outputs but {source} lists {count} labels: the model "
                             "and its labels come from different runs")


def sidecar_path(model_path) -> Path:
    return Path(model_path).with_suffix(".json")


def read_sidecar(model_path) -> dict | None:
    path = sidecar_path(model_path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise ModelFileError(f"cannot read sidecar {path}: {err}") from None
    if not isinstance(data, dict) or "labels" not in data or "input" not in data:
        raise ModelFileError(f"{path} is not an edgecls sidecar (no labels/input)")
    check_pair(model_path, data, path)
    return data


def file_sizes(path) -> dict:
    """``bytes`` and ``gzip_bytes`` (level 9) of a file: what it costs to store and to download.

    A folder (a SavedModel) counts the bytes of its files, and the gzip of a tar of it, as it would be
    downloaded."""
    path = Path(path)
    if path.is_dir():
        return {"bytes": sum(f.stat().st_size for f in path.rglob("*") if f.is_file()),
                "gzip_bytes": len(gzip.compress(_tar_bytes(path), compresslevel=9))}
    data = path.read_bytes()
    return {"bytes": len(data), "gzip_bytes": len(gzip.compress(data, compresslevel=9))}


def _tar_bytes(folder: Path) -> bytes:
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for file in sorted(f for f in folder.rglob("*") if f.is_file()):
            info = tar.gettarinfo(str(file), arcname=str(file.relative_to(folder)))
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""  # the same folder, the same bytes
            with file.open("rb") as handle:
                tar.addfile(info, handle)
    return buffer.getvalue()


def tool_versions() -> dict:
    """Versions of the installed packages that make or run the formats (edgecls.formats), edgecls first."""
    from importlib import metadata

    versions = {}
    from edgecls import formats

    for package in ("edgecls", *formats.packages()):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return versions


def build_sidecar(*, model_file, fmt: str, variant: str, labels, architecture: str, img_size: int,
                  input_dtype: str, input_quant=(1.0, 0), output_kind: str, output_dtype: str = "float32",
                  output_quant=(0.0, 0), source_run=None, accuracy: dict | None = None, batch: int | None = 1,
                  extra: dict | None = None) -> dict:
    """The sidecar of an exported model: labels, input (shape, type, pixel range, resize,
    quantization), output kind and quantization, source run, accuracy and tool versions."""
    return {
        "schema": SCHEMA,
        "model_file": Path(model_file).name,
        "format": fmt,
        "variant": variant,
        "architecture": architecture,
        "labels": list(labels),
        "input": {
            "shape": [batch, img_size, img_size, 3],
            "dtype": input_dtype,
            "layout": "NHWC",
            "color": "RGB",
            "pixel_range": [0, 255],
            "resize": RESIZE_METHOD,
            "normalization": "inside the model: feed RGB pixel values 0-255",
            "scale": float(input_quant[0]),
            "zero_point": int(input_quant[1]),
        },
        "output": {
            "kind": output_kind,  # "logits": apply softmax after dequantizing
            "dtype": output_dtype,
            "scale": float(output_quant[0]),
            "zero_point": int(output_quant[1]),
        },
        "source_run": str(source_run) if source_run else None,
        "accuracy": accuracy,
        "size": file_sizes(model_file),
        "versions": tool_versions(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **(extra or {}),
    }


class StaleSidecarError(ModelFileError):
    """A sidecar JSON that describes other bytes than the model file beside it."""


def content_sha256(path) -> str:
    """sha256 of a model file, or of a model folder (a SavedModel): its files' relative names and bytes, sorted."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_ino, stat.st_mtime_ns, stat.st_size)
    if key not in _hashes:
        digest = hashlib.sha256()
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            if path.is_dir():
                digest.update(str(file.relative_to(path)).encode() + b"\0")
            with file.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        if len(_hashes) > 256:  # a process reads a handful of models; a search, a few dozen
            _hashes.clear()
        _hashes[key] = digest.hexdigest()
    return _hashes[key]


_hashes: dict[tuple, str] = {}


def check_pair(model_path, sidecar: dict, sidecar_file) -> None:
    """Raise :class:`StaleSidecarError` naming ``sidecar_file`` when it describes other bytes than ``model_path``.

    Sidecars from before the hash was recorded (no ``sha256``) are trusted as they were.
    """
    recorded = sidecar.get(SHA_KEY)
    model_path = Path(model_path)
    if not recorded or not model_path.exists():
        return
    if content_sha256(model_path) != recorded:
        raise StaleSidecarError(
            f"{sidecar_file} is stale: it describes other bytes than {model_path} (sha256 differs: the model was "
            f"damaged or replaced, or an export was interrupted); export the model again, or delete "
            f"{Path(sidecar_file).name} to use the copy inside the model where it has one")


def read_model_sidecar(model_path) -> tuple[dict | None, str | None]:
    """The sidecar of a model and where it came from: ``(<model>.json, "json")`` when that file is
    beside the model (it wins: it is what a user edits), else ``(copy, "embedded")`` from inside a
    .tflite/.onnx file, else ``(None, None)``. A damaged sidecar either way is a ModelFileError."""
    from edgecls.model_metadata import embedded_sidecar

    sidecar = read_sidecar(model_path)
    if sidecar is not None:
        return sidecar, "json"
    sidecar = embedded_sidecar(model_path)
    return (sidecar, "embedded") if sidecar is not None else (None, None)
