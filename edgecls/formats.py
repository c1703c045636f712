"""The model formats edgecls writes and the runtimes that run them: one table, read by every stage.

Each row says what a format is (suffix, title), how it is made (``export``: what ``edgecls export
--format NAME`` calls), what runs it (``runtime``: the deploy class that ``predict`` and ``bench``
open such a file with, and ``version``: what that runtime reports itself as), whether the sidecar
travels inside the file (``embed``/``read_embedded``), whether ``export --int8`` has an int8 variant
of it, and which candidates ``edgecls optimize --runtime NAME`` tries (``search_steps``). Export
dispatch, the one-line errors for an unknown name, the help texts, bench's runtime choice,
optimize's candidates and the sidecar's tool versions are all derived from :data:`FORMATS`.

Implementations are named ``"module:attribute"`` and imported on first use, so this module stays a
leaf of the core layer (no TensorFlow, no import of the stages that implement the formats). Adding a
format: ``docs/architecture.md``.
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path

from edgecls.errors import EdgeclsError, ModelFileError


@dataclasses.dataclass(frozen=True)
class Format:
    name: str  # what --format / --runtime say
    suffix: str  # of the file; "" for a folder (SavedModel)
    title: str  # for help texts
    # (ctx, *, prefix, int8, options, reference_top1) -> list[ExportRecord]; None: no `edgecls export` of it
    export: str | None = None
    runtime: str | None = None  # a edgecls.deploy.runtimes.Runtime subclass: (path, sidecar, threads)
    version: str | None = None  # () -> "library version": the runtime's own name and version, for bench rows
    int8: bool = False  # `edgecls export --int8` also writes an int8 variant of this format
    embed: str | None = None  # (path, sidecar) -> None: the sidecar written into the file itself
    read_embedded: str | None = None  # (path) -> dict | None: that copy read back
    # (ctx, *, objective, calibration, qat_epochs, prune_epochs, fine_tune_optimizer) -> list[Step]: optimize's
    search_steps: str | None = None
    describe: str | None = None  # (ctx, path, variant, accuracy, extra) -> Described: the sidecar of a new file
    packages: tuple[str, ...] = ()  # distributions that make or run it: their versions go into every sidecar

    @property
    def embeds_sidecar(self) -> bool:
        return self.embed is not None

    @property
    def exported_in_run(self) -> bool:
        """Whether bench of a run folder runs such files from its exports/ (the .keras reference comes apart)."""
        return self.export is not None and self.runtime is not None


FORMATS: dict[str, Format] = {fmt.name: fmt for fmt in (
    Format("tflite", ".tflite", "TFLite (LiteRT, tflite-runtime on old Pis)",
           export="edgecls.converters.exports:export_tflite", runtime="edgecls.deploy.runtimes:TFLiteRuntime",
           version="edgecls.deploy.litert:library_version", int8=True,
           embed="edgecls.converters.tflite_metadata:embed_tflite_file", read_embedded="edgecls.model_metadata:tflite_sidecar",
           search_steps="edgecls.searching.candidates:tflite_candidates",
           describe="edgecls.converters.publishing:describe_tflite",
           packages=("tensorflow", "ai-edge-litert", "tflite-runtime", "flatbuffers")),
    Format("onnx", ".onnx", "ONNX (onnxruntime)",
           export="edgecls.converters.exports:export_onnx_variants", runtime="edgecls.deploy.runtimes:OnnxRuntime",
           version="edgecls.deploy.runtimes:onnxruntime_version", int8=True,
           embed="edgecls.model_metadata:embed_onnx_file", read_embedded="edgecls.model_metadata:onnx_sidecar",
           search_steps="edgecls.searching.candidates:onnx_candidates",
           describe="edgecls.converters.publishing:describe_onnx", packages=("tf2onnx", "onnx", "onnxruntime")),
    Format("saved_model", "", "TensorFlow SavedModel (a folder; TF Serving, TF.js and other converters)",
           export="edgecls.converters.exports:export_saved_model", packages=("tensorflow",)),
    Format("keras", ".keras", "Keras (the trained float model, the reference every export is measured against)",
           runtime="edgecls.deploy.runtimes:KerasRuntime", version="edgecls.deploy.runtimes:keras_version",
           packages=("tensorflow", "tf_keras", "tensorflow-model-optimization")),
)}


def load(ref: str):
    """The object a ``"module:attribute"`` reference of the table names, imported now."""
    module, _, attribute = ref.partition(":")
    return getattr(importlib.import_module(module), attribute)


def get(name: str, *, role: str = "format") -> Format:
    """The format (or, ``role="runtime"``, the runtime) called ``name``; else a one-line error listing them."""
    names = runtime_names() if role == "runtime" else export_names()
    return FORMATS[check_choice(name, names, message=f"unknown {role} '{{name}}'")]


def check_choice(name: str, names, *, message: str) -> str:
    """``name`` if it is one of ``names``; else ``message`` (``{name}`` filled in) and the choices, in one line."""
    names = list(names)
    if name not in names:
        raise EdgeclsError(f"{message.format(name=name)}; choose {choices(names)}")
    return name


def for_path(path) -> Format:
    """The format of a model file, by its suffix; a file edgecls cannot run is a one-line error."""
    suffix = Path(path).suffix.lower()
    for fmt in FORMATS.values():
        if fmt.suffix and fmt.suffix == suffix and fmt.runtime:
            return fmt
    raise ModelFileError(f"unknown model type {path}: expected {choices(runnable_suffixes(), last='or')}")


def export_names() -> list[str]:
    return [f.name for f in FORMATS.values() if f.export]


def runtime_names() -> list[str]:
    return [f.name for f in FORMATS.values() if f.runtime]


def search_names() -> list[str]:
    return [f.name for f in FORMATS.values() if f.search_steps]


def runnable_suffixes() -> list[str]:
    return [f.suffix for f in FORMATS.values() if f.runtime and f.suffix]


def embedding_suffixes() -> list[str]:
    return [f.suffix for f in FORMATS.values() if f.embeds_sidecar]


def choices(names, *, last: str = "or") -> str:
    """``"a, b or c"``: the names as an error message or a help text lists them."""
    names = list(names)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} {last} {names[-1]}"


def help_text(names, *, extra: tuple[str, ...] = ()) -> str:
    """``"a | b | c"``: the choices of an option, as its --help shows them."""
    return " | ".join([*names, *extra])


def packages() -> list[str]:
    """Every distribution a format names, in table order, without repeats."""
    seen: list[str] = []
    for fmt in FORMATS.values():
        seen += [p for p in fmt.packages if p not in seen]
    return seen
