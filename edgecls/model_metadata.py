"""The sidecar inside the model file, so a ``.tflite`` or ``.onnx`` copied alone keeps its labels.

**TFLite: a zip appended to the flatbuffer** holding ``edgecls/sidecar.json`` (the sidecar less its
``size``, which a file cannot state about itself) and ``labels.txt``, both stored uncompressed. The
zip is also where the standard TFLite metadata keeps its associated files: the flatbuffer itself
carries that metadata (edgecls.converters.tflite_metadata, for MediaPipe Tasks and the LiteRT
support library), whose output names ``labels.txt`` of this same zip as its labels file. edgecls'
own copy stays in the zip rather than in the flatbuffer's metadata table because:

- the interpreter builds the same graph and gives identical outputs: the flatbuffer is the
  converter's with one more buffer (the standard metadata), and the TFLite loader ignores bytes
  past the flatbuffer — checked with
  ai-edge-litert (``model_path=``, which memory-maps the file, and ``model_content=``, with and
  without XNNPACK) and with tflite-runtime 2.14, the Pi's stack (tests/test_model_metadata.py);
- reading needs only the standard library's ``zipfile``, so ``pi_infer.py`` (stdlib + numpy +
  pillow + an interpreter, on the Pi's old Pythons) reads it too, where a flatbuffer ``metadata``
  entry would need a hand-written flatbuffer parser (the interpreters have no metadata getter);
- the sidecar's copy is rewritten without touching the flatbuffer; the standard metadata packs a
  model's associated files (labels) the same way, and Ultralytics appends its JSON likewise, so
  ``unzip -l model.tflite`` lists what the file carries.

The cost: a tool that re-serialises the flatbuffer drops the zip (the sidecar JSON beside the file
still travels with it).

**ONNX: ``metadata_props["edgecls_sidecar"]``**, the format's own key/value store, which
onnxruntime reads back without the ``onnx`` package.

A sidecar JSON beside the file always wins over the embedded copy (it is what a user edits). A
damaged embedded block is a one-line ``ModelFileError`` naming the file and the missing sidecar,
never a silent guess at the labels. Standard library only, apart from ``onnx`` for writing and
reading ONNX files here.
"""

from __future__ import annotations

import io
import json
import zipfile
import zlib
from pathlib import Path

from edgecls import formats
from edgecls.errors import ModelFileError, first_line
from edgecls.fsutil import atomic_path

ZIP_SIDECAR = "edgecls/sidecar.json"
ZIP_LABELS = "labels.txt"
ONNX_KEY = "edgecls_sidecar"
FILE_FIELDS = ("size", "sha256")  # about the file as written (edgecls.sidecar), so never inside the file itself
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed, so the same sidecar gives the same bytes
_DAMAGE_WINDOW = 1 << 20  # an embedded block is a few KB at the file's end


def embedded_copy(sidecar: dict) -> dict:
    """What goes into the file: the sidecar without ``size`` and ``sha256`` (they cover the copy too)."""
    return {key: value for key, value in sidecar.items() if key not in FILE_FIELDS}


def sidecar_from_text(text: str, path, entry: str) -> dict:
    """Parse the sidecar JSON found in model file ``path`` under ``entry``; a one-line error otherwise."""
    try:
        data = json.loads(text)
    except ValueError as err:
        raise ModelFileError(f"{path}: unreadable embedded sidecar ({entry}: {first_line(err)}); "
                             f"{_remedy(path)}") from None
    if not isinstance(data, dict) or "labels" not in data or "input" not in data:
        raise ModelFileError(f"{path}: its embedded sidecar ({entry}) has no labels/input; {_remedy(path)}")
    return data


def _remedy(path) -> str:
    return f"put {Path(path).with_suffix('.json').name} beside it or export it again"


# ----------------------------------------------------------------------------- TFLite


def embed_tflite(blob: bytes, sidecar: dict) -> bytes:
    """The flatbuffer ``blob`` (any earlier edgecls block removed) with ``sidecar`` appended as a zip."""
    text = json.dumps(embedded_copy(sidecar), indent=1, default=_json_default)
    labels = "".join(f"{label}\n" for label in sidecar.get("labels", ()))
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        for name, content in ((ZIP_SIDECAR, text), (ZIP_LABELS, labels)):
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_STORED  # MediaPipe reads labels.txt in place: it refuses deflated entries
            zipped.writestr(info, content.encode("utf-8"))
    return strip_tflite(blob) + archive.getvalue()


def strip_tflite(blob: bytes) -> bytes:
    """The flatbuffer alone: ``blob`` without an appended edgecls zip (unchanged when it has none)."""
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as zipped:
            infos = zipped.infolist()
            if ZIP_SIDECAR not in zipped.namelist():
                return blob
            # zipfile shifts header offsets by the bytes before the archive: they are file offsets.
            return blob[:min(info.header_offset for info in infos)]
    except zipfile.BadZipFile:
        return blob


def tflite_sidecar(path) -> dict | None:
    """The sidecar embedded in a .tflite file, None when it carries none; damaged → ModelFileError."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zipped:
            if ZIP_SIDECAR not in zipped.namelist():
                return None
            text = zipped.read(ZIP_SIDECAR).decode("utf-8")
    except FileNotFoundError:
        raise ModelFileError(f"model file not found: {path}") from None
    except zipfile.BadZipFile as err:
        if _has_damaged_block(path):
            raise _damaged(path, first_line(err)) from None
        return None  # a plain flatbuffer
    except (zlib.error, UnicodeDecodeError, EOFError) as err:
        raise _damaged(path, first_line(err)) from None
    return sidecar_from_text(text, path, ZIP_SIDECAR)


def _has_damaged_block(path: Path) -> bool:
    """Whether our entry's name is in the file's tail although no readable zip ends the file."""
    with path.open("rb") as handle:
        size = handle.seek(0, io.SEEK_END)
        handle.seek(max(0, size - _DAMAGE_WINDOW))
        return ZIP_SIDECAR.encode() in handle.read()


def _damaged(path: Path, reason: str) -> ModelFileError:
    return ModelFileError(f"{path}: its embedded sidecar ({ZIP_SIDECAR}) is damaged ({reason}), so its labels and "
                          f"preprocessing are unknown; {_remedy(path)}")


# ----------------------------------------------------------------------------- ONNX


def onnx_sidecar(path) -> dict | None:
    """The sidecar in an ONNX file's ``metadata_props``, None when it carries none."""
    path = Path(path)
    props = {prop.key: prop.value for prop in load_onnx(path).metadata_props}
    return onnx_props_sidecar(props, path)


def onnx_props_sidecar(props, path) -> dict | None:
    """The sidecar in a ``metadata_props`` mapping (onnx's, or onnxruntime's ``custom_metadata_map``)."""
    if ONNX_KEY not in props:
        return None
    return sidecar_from_text(props[ONNX_KEY], path, f"metadata_props {ONNX_KEY}")


# ----------------------------------------------------------------------------- any model file


def embed_onnx_file(path: Path, sidecar: dict) -> None:
    import onnx

    proto = load_onnx(path)
    set_onnx_property(proto, ONNX_KEY, embedded_copy(sidecar))
    with atomic_path(path) as tmp:
        onnx.save(proto, str(tmp))


def _embedding_format(path: Path):
    return next((f for f in formats.FORMATS.values() if f.embeds_sidecar and f.suffix == path.suffix.lower()), None)


def carries_sidecar(model_path) -> bool:
    """Whether files of this kind carry their sidecar inside (the formats table's ``embed``)."""
    return _embedding_format(Path(model_path)) is not None


def embed_in_file(model_path, sidecar: dict) -> Path:
    """Rewrite a model file atomically with ``sidecar`` embedded (replacing an older copy)."""
    path = Path(model_path)
    fmt = _embedding_format(path)
    if fmt is None:
        raise ModelFileError(f"cannot embed a sidecar in {path}: only "
                             f"{formats.choices(formats.embedding_suffixes(), last='and')} files carry one")
    formats.load(fmt.embed)(path, sidecar)
    return path


def embedded_sidecar(model_path) -> dict | None:
    """The sidecar inside a model file; None when it carries none (or its kind never does)."""
    fmt = _embedding_format(Path(model_path))
    return None if fmt is None else formats.load(fmt.read_embedded)(model_path)


def set_onnx_property(proto, key: str, value: dict) -> None:
    """Set ``metadata_props[key]`` of an ONNX ModelProto to ``value`` as JSON (replacing, never duplicating)."""
    text = json.dumps(value, default=_json_default)
    for prop in proto.metadata_props:
        if prop.key == key:
            prop.value = text
            return
    entry = proto.metadata_props.add()
    entry.key, entry.value = key, text


def load_onnx(path):
    """The ONNX model at ``path``; a missing or unreadable file is one ModelFileError line."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"ONNX model not found: {path}")
    try:
        return onnx.load(str(path))
    except Exception as err:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise ModelFileError(f"cannot read ONNX model {path}: {first_line(err)}") from None


def _json_default(value):
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
