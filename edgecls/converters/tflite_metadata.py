"""Standard TFLite metadata in every .tflite edgecls writes, beside edgecls' own embedded sidecar.

MediaPipe Tasks' ``ImageClassifier`` (Android, iOS, web, Python) and the LiteRT support library
read the *standard* metadata: a ``ModelMetadata`` flatbuffer (file identifier ``M001``) in a model
buffer named ``TFLITE_METADATA``, and its associated files (the labels) in a zip appended to the
model. edgecls already appends a zip (edgecls.model_metadata), so both share it: one zip holding
``labels.txt`` (the standard labels file, which edgecls' readers read too) and
``edgecls/sidecar.json``. Every entry is stored uncompressed, because MediaPipe hands out
associated files as views into the model's bytes and refuses a deflated archive.

What is written, from the sidecar:

- input ``image``: RGB ``ImageProperties`` with the model's size; for a float input a
  ``NormalizationOptions`` of mean 0 and std 1, which is the model's own contract (RGB 0–255,
  normalised inside the graph): a client computes ``(pixel - 0) / 1``; for a uint8 input none
  (MediaPipe feeds the pixels as they are); ``Stats`` 0–255;
- output ``score``: ``FeatureProperties`` and ``labels.txt`` as its ``TENSOR_AXIS_LABELS`` file;
  an int8 model ends at the logits (the sidecar's ``output.kind``), so its scores rank the classes
  as the probabilities do but are not probabilities, and its description says so;
- name, description, version, author and licence: the sidecar's ``tflite.standard_metadata``
  (edgecls.config.MetadataConfig, completed from the run by :func:`resolve_model_info`).

Why this writer and not MediaPipe's: MediaPipe's metadata writers would make the ``mediapipe``
wheel (with opencv-contrib, sounddevice and pins on absl-py and flatbuffers) a dependency of every
export, and in mediapipe 1.2.3 they cannot even be imported (their ``metadata`` module needs
``mediapipe.tasks.cc``, which the wheel does not ship); tflite-support has no wheels for current
Pythons. The two schemas are enough: the model's from ``ai_edge_litert`` (already what runs every
.tflite here; its object API re-serialises the converter's bytes byte for byte, so adding one
buffer changes nothing else) and the metadata tables built with ``flatbuffers``' Builder from the
field numbers of the TFLite metadata schema (``_Slot`` below). tests/test_mediapipe_client.py
holds it to MediaPipe: its generated schema code parses every field back, and its
``ImageClassifier`` classifies the files with their label names.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecls.fsutil import atomic_path
from edgecls.model_metadata import ZIP_LABELS, embed_tflite, strip_tflite

METADATA_BUFFER_NAME = "TFLITE_METADATA"
FILE_IDENTIFIER = b"M001"
# Every field written here is in the first version of the metadata schema, so any parser reads it.
MIN_PARSER_VERSION = "1.0.0"
INFO_FIELDS = ("name", "description", "version", "author", "license")
INFO_KEY = "standard_metadata"  # under the sidecar's "tflite", where a format keeps what is its own


class _Slot:
    """Field numbers (vtable slots) and enum values of the TFLite metadata schema (metadata_schema.fbs)."""

    MODEL = {"name": 0, "description": 1, "version": 2, "subgraph_metadata": 3, "author": 4, "license": 5,
             "associated_files": 6, "min_parser_version": 7}
    MODEL_FIELDS = 8
    SUBGRAPH = {"name": 0, "description": 1, "input_tensor_metadata": 2, "output_tensor_metadata": 3}
    SUBGRAPH_FIELDS = 10
    TENSOR = {"name": 0, "description": 1, "dimension_names": 2, "content": 3, "process_units": 4, "stats": 5,
              "associated_files": 6}
    TENSOR_FIELDS = 7
    CONTENT = {"content_properties_type": 0, "content_properties": 1, "range": 2}
    CONTENT_FIELDS = 3
    FEATURE_PROPERTIES, IMAGE_PROPERTIES = 1, 2  # union ContentProperties
    IMAGE_PROPERTIES_FIELDS = {"color_space": 0, "default_size": 1}
    COLOR_SPACE_RGB = 1
    IMAGE_SIZE = {"width": 0, "height": 1}
    PROCESS_UNIT = {"options_type": 0, "options": 1}
    NORMALIZATION_OPTIONS = 1  # union ProcessUnitOptions
    NORMALIZATION = {"mean": 0, "std": 1}
    STATS = {"max": 0, "min": 1}
    ASSOCIATED_FILE = {"name": 0, "description": 1, "type": 2, "locale": 3, "version": 4}
    ASSOCIATED_FILE_FIELDS = 5
    TENSOR_AXIS_LABELS = 2  # enum AssociatedFileType


class _Tables:
    """A flatbuffers Builder with the three kinds of field the metadata tables use (children first)."""

    def __init__(self) -> None:
        import flatbuffers

        self.builder = flatbuffers.Builder(1024)

    def string(self, text: str | None):
        return self.builder.CreateString(text) if text else None

    def floats(self, values):
        return self.builder.CreateNumpyVector(np.asarray(values, dtype="<f4"))

    def vector(self, offsets):
        builder = self.builder
        builder.StartVector(4, len(offsets), 4)
        for offset in reversed(offsets):
            builder.PrependUOffsetTRelative(offset)
        return builder.EndVector()

    def table(self, fields: int, *, offsets=None, bytes_=None, uints=None):
        """A table of ``fields`` slots: ``offsets`` (children), ``bytes_`` (enums, union types), ``uints``."""
        builder = self.builder
        builder.StartObject(fields)
        for slot, value in sorted((offsets or {}).items()):
            if value is not None:
                builder.PrependUOffsetTRelativeSlot(slot, value, 0)
        for slot, value in sorted((uints or {}).items()):
            builder.PrependUint32Slot(slot, int(value), 0)
        for slot, value in sorted((bytes_ or {}).items()):
            builder.PrependUint8Slot(slot, int(value), 0)
        return builder.EndObject()

    def finish(self, root) -> bytes:
        self.builder.Finish(root, file_identifier=FILE_IDENTIFIER)
        return bytes(self.builder.Output())


def resolve_model_info(sidecar: dict, given=None) -> dict:
    """Name, description, version, author, licence: ``given`` (a MetadataConfig or dict) where set, else from the run."""
    if given is not None and not isinstance(given, dict):
        given = {key: getattr(given, key, None) for key in INFO_FIELDS}
    given = {key: value for key, value in (given or {}).items() if value}
    labels = list(sidecar.get("labels") or [])
    shape = (sidecar.get("input") or {}).get("shape") or [1, "?", "?", 3]
    shown = ", ".join(labels[:5]) + (f" and {len(labels) - 5} more" if len(labels) > 5 else "")
    source = sidecar.get("source_run")
    description = (f"{sidecar.get('architecture') or 'image'} classifier of {len(labels)} classes ({shown}); "
                   f"{shape[1]}×{shape[2]} RGB input, {sidecar.get('variant') or 'tflite'} TFLite; made by edgecls")
    accuracy = (sidecar.get("accuracy") or {}).get("top1")
    if accuracy is not None:
        description += f"; test top-1 {accuracy:.2%}"
    defaults = {"name": Path(source).name if source else (sidecar.get("architecture") or "edgecls classifier"),
                "description": description, "version": sidecar.get("created") or "", "author": "", "license": ""}
    return {key: str(given.get(key, defaults[key])) for key in INFO_FIELDS}


def model_info(sidecar: dict) -> dict:
    """The name, description, version, author and licence the standard metadata of ``sidecar``'s model says:
    as recorded under ``tflite.standard_metadata`` (by the export), else from the sidecar."""
    return {**resolve_model_info(sidecar), **((sidecar.get("tflite") or {}).get(INFO_KEY) or {})}


def metadata_buffer(sidecar: dict) -> bytes:
    """The ``ModelMetadata`` flatbuffer (identifier M001) of a model with ``sidecar``."""
    info = model_info(sidecar)
    tables = _Tables()
    subgraph = tables.table(_Slot.SUBGRAPH_FIELDS, offsets={
        _Slot.SUBGRAPH["input_tensor_metadata"]: tables.vector([_input_tensor(tables, sidecar)]),
        _Slot.SUBGRAPH["output_tensor_metadata"]: tables.vector([_output_tensor(tables, sidecar)]),
    })
    model = _Slot.MODEL
    root = tables.table(_Slot.MODEL_FIELDS, offsets={
        model["name"]: tables.string(info["name"]), model["description"]: tables.string(info["description"]),
        model["version"]: tables.string(info["version"]), model["subgraph_metadata"]: tables.vector([subgraph]),
        model["author"]: tables.string(info["author"]), model["license"]: tables.string(info["license"]),
        model["min_parser_version"]: tables.string(MIN_PARSER_VERSION),
    })
    return tables.finish(root)


def _input_tensor(tables: _Tables, sidecar: dict):
    spec = sidecar.get("input") or {}
    _, height, width, _ = spec.get("shape") or [1, 0, 0, 3]
    size = tables.table(2, uints={_Slot.IMAGE_SIZE["width"]: width, _Slot.IMAGE_SIZE["height"]: height})
    image = tables.table(2, offsets={_Slot.IMAGE_PROPERTIES_FIELDS["default_size"]: size},
                         bytes_={_Slot.IMAGE_PROPERTIES_FIELDS["color_space"]: _Slot.COLOR_SPACE_RGB})
    content = tables.table(_Slot.CONTENT_FIELDS, offsets={_Slot.CONTENT["content_properties"]: image},
                           bytes_={_Slot.CONTENT["content_properties_type"]: _Slot.IMAGE_PROPERTIES})
    units = None
    if spec.get("dtype") == "float32":  # (pixel - 0) / 1: the 0–255 pixels the graph normalises itself
        options = tables.table(2, offsets={_Slot.NORMALIZATION["mean"]: tables.floats([0.0]),
                                           _Slot.NORMALIZATION["std"]: tables.floats([1.0])})
        unit = tables.table(2, offsets={_Slot.PROCESS_UNIT["options"]: options},
                            bytes_={_Slot.PROCESS_UNIT["options_type"]: _Slot.NORMALIZATION_OPTIONS})
        units = tables.vector([unit])
    low, high = spec.get("pixel_range") or [0, 255]
    stats = tables.table(2, offsets={_Slot.STATS["max"]: tables.floats([high]), _Slot.STATS["min"]: tables.floats([low])})
    description = (f"RGB image, {width}×{height}, pixel values {low}–{high} "
                   f"({spec.get('dtype', 'uint8')}; resized {spec.get('resize') or 'bilinear'}, no crop)")
    return tables.table(_Slot.TENSOR_FIELDS, offsets={
        _Slot.TENSOR["name"]: tables.string("image"), _Slot.TENSOR["description"]: tables.string(description),
        _Slot.TENSOR["content"]: content, _Slot.TENSOR["process_units"]: units, _Slot.TENSOR["stats"]: stats,
    })


def _output_tensor(tables: _Tables, sidecar: dict):
    output = sidecar.get("output") or {}
    logits = output.get("kind") == "logits"
    labels_file = tables.table(_Slot.ASSOCIATED_FILE_FIELDS, offsets={
        _Slot.ASSOCIATED_FILE["name"]: tables.string(ZIP_LABELS),
        _Slot.ASSOCIATED_FILE["description"]: tables.string("Labels for categories that the model can recognize."),
    }, bytes_={_Slot.ASSOCIATED_FILE["type"]: _Slot.TENSOR_AXIS_LABELS})
    content = tables.table(_Slot.CONTENT_FIELDS, offsets={_Slot.CONTENT["content_properties"]: tables.table(0)},
                           bytes_={_Slot.CONTENT["content_properties_type"]: _Slot.FEATURE_PROPERTIES})
    stats = None
    if not logits:
        stats = tables.table(2, offsets={_Slot.STATS["max"]: tables.floats([1.0]),
                                         _Slot.STATS["min"]: tables.floats([0.0])})
    description = ("Logits of the classes, in labels.txt order: they rank the classes as the probabilities do; "
                   "apply softmax for probabilities." if logits else
                   "Probabilities of the classes, in labels.txt order.")
    return tables.table(_Slot.TENSOR_FIELDS, offsets={
        _Slot.TENSOR["name"]: tables.string("score"), _Slot.TENSOR["description"]: tables.string(description),
        _Slot.TENSOR["content"]: content, _Slot.TENSOR["stats"]: stats,
        _Slot.TENSOR["associated_files"]: tables.vector([labels_file]),
    })


def with_metadata(flatbuffer: bytes, metadata: bytes) -> bytes:
    """The model flatbuffer with ``metadata`` as its ``TFLITE_METADATA`` buffer (replacing an older one)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(flatbuffer), 0)
    data = np.frombuffer(metadata, dtype=np.uint8)
    model.metadata = list(model.metadata or [])
    model.buffers = list(model.buffers or [])
    entry = next((m for m in model.metadata if _text(m.name) == METADATA_BUFFER_NAME), None)
    if entry is None:
        buffer = schema.BufferT()
        model.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name, entry.buffer = METADATA_BUFFER_NAME, len(model.buffers) - 1
        model.metadata.append(entry)
    model.buffers[entry.buffer].data = data
    builder = flatbuffers.Builder(len(flatbuffer) + len(metadata) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def read_metadata_buffer(flatbuffer: bytes) -> bytes | None:
    """The ``TFLITE_METADATA`` buffer of a model flatbuffer, None when it has none."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(flatbuffer, 0)
    for index in range(model.MetadataLength()):
        entry = model.Metadata(index)
        if _text(entry.Name()) == METADATA_BUFFER_NAME:
            return model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
    return None


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value or "")


def embed_tflite_file(path, sidecar: dict) -> None:
    """The formats table's ``embed`` for .tflite: standard metadata in the flatbuffer, then edgecls' zip
    (labels.txt and the sidecar) after it; written atomically."""
    path = Path(path)
    # Recorded in the sidecar itself (the dict publish then writes as JSON), so both say what the metadata says.
    tflite = sidecar.setdefault("tflite", {})
    tflite[INFO_KEY] = model_info(sidecar)
    flatbuffer = with_metadata(strip_tflite(path.read_bytes()), metadata_buffer(sidecar))
    blob = embed_tflite(flatbuffer, sidecar)
    with atomic_path(path) as tmp:
        tmp.write_bytes(blob)
