"""What ``edgecls bench MODEL...`` runs: model files and run folders turned into (file, runtime) rows.

A run folder stands for its ``model.keras`` (the float reference, run through the Keras runtime)
and every export in ``exports/``. The Keras reference of an export is found from its sidecar's
``source_run``, from the run folder around ``exports/``, or from ``--reference``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgecls import formats
from edgecls.deploy.runtimes import check_runtime_name, runtime_for
from edgecls.errors import EdgeclsError, ModelFileError
from edgecls.run_folder import EXPORTS, MODEL, RunFolder
from edgecls.sidecar import read_sidecar


@dataclass(frozen=True)
class Target:
    path: Path
    runtime: str  # a runtime of edgecls.formats: tflite | onnx | keras

    @property
    def is_reference(self) -> bool:
        return self.runtime == "keras"


def resolve_targets(models, runtime: str = "all") -> list[Target]:
    """Every (model file, runtime) pair to benchmark, in the order given, without duplicates."""
    check_runtime_name(runtime)
    found: list[Target] = []
    for given in models:
        path = Path(given)
        if path.is_dir():
            files = run_folder_models(path)
        elif path.is_file():
            runtime_for(path)  # a clear error for a .txt or other unknown kind
            files = [path]
        else:
            raise ModelFileError(f"model file not found: {given}")
        for file in files:
            target = Target(file, runtime_for(file))
            if target not in found:
                found.append(target)
    chosen = [t for t in found if runtime in ("all", t.runtime)]
    if not chosen:
        kinds = ", ".join(sorted({t.path.suffix for t in found})) or "none"
        raise EdgeclsError(f"no model to run in the {runtime} runtime (model types given: {kinds}); "
                           f"the {runtime} runtime runs {_suffix_of(runtime)} files")
    return chosen


def _suffix_of(runtime: str) -> str:
    return formats.get(runtime, role="runtime").suffix


def run_folder_models(folder: Path) -> list[Path]:
    """A run folder's model.keras and the exports/ files of every format a runtime runs (sorted)."""
    run = RunFolder(folder)
    files = [run.model] if run.model.is_file() else []
    exports = run.exports
    if exports.is_dir():
        suffixes = {f.suffix for f in formats.FORMATS.values() if f.exported_in_run and f.suffix}
        files += sorted(p for p in exports.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
    if not files:
        raise ModelFileError(f"{folder} is a folder without {MODEL} or exported models: "
                             f"give a run folder or a {'/'.join(formats.runnable_suffixes())} file")
    return files


def reference_for(model_path, explicit=None) -> Path | None:
    """The Keras model an export was made from, or None when it cannot be found."""
    if explicit is not None:
        return _explicit_reference(Path(explicit))
    model_path = Path(model_path)
    if model_path.suffix == ".keras":
        return None  # a reference has no reference
    candidates = []
    try:
        source = (read_sidecar(model_path) or {}).get("source_run")
    except ModelFileError:
        source = None
    if source:
        source = Path(source)
        candidates += [source, model_path.parent / source, model_path.parent.parent / source]
    if model_path.parent.name == EXPORTS:
        candidates.append(model_path.parent.parent)
    for candidate in candidates:
        if candidate.is_file() and candidate.suffix == ".keras":
            return candidate
        if RunFolder(candidate).model.is_file():
            return RunFolder(candidate).model
    return None


def _explicit_reference(path: Path) -> Path:
    if path.is_dir():
        path = RunFolder(path).model
    if not path.is_file():
        raise ModelFileError(f"reference model not found: {path}")
    if path.suffix != ".keras":
        raise ModelFileError(f"--reference must be a .keras model or a run folder, got {path}")
    return path

