"""What a RUN_OR_MODEL argument names: the model file, the run folder it belongs to, its labels.

A run folder holds model.keras, labels.txt and config.yaml. A .keras file takes its labels from
its sidecar (``exports/pruned.json`` beside ``exports/pruned.keras``) or from the run folder it
sits in, so exported Keras variants work as well as the run's own model.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from edgecls.config import RunConfig, load_run_config
from edgecls.errors import EdgeclsError
from edgecls.models.model_files import read_labels
from edgecls.run_folder import EXPORTS, LABELS, MODEL, RunFolder
from edgecls.sidecar import check_outputs_match_labels, read_sidecar


@dataclasses.dataclass
class ModelSource:
    model_path: Path
    run_dir: Path | None  # the run folder the model belongs to, when there is one
    labels: list[str]
    config: RunConfig | None  # the run's config.yaml, when there is one

    @property
    def name(self) -> str:
        """Short name for tables: the run folder's name, or the model file's name."""
        if self.run_dir is not None and self.model_path == RunFolder(self.run_dir).model:
            return self.run_dir.name
        return self.model_path.name


def locate(target) -> tuple[Path, Path | None]:
    """``(model file, run folder or None)`` for a run folder or a .keras path; nothing is loaded."""
    target = Path(target)
    if target.is_dir():
        model_path = RunFolder(target).model
        if not model_path.is_file():
            raise EdgeclsError(f"not a run folder (no {MODEL}): {target}")
        return model_path, target
    if not target.exists():
        raise EdgeclsError(f"not found: {target} (give a run folder or a .keras file)")
    return target, _owning_run(target)


def _owning_run(model_path: Path) -> Path | None:
    parent = model_path.parent
    for folder in (parent, parent.parent if parent.name == EXPORTS else None):
        if folder is not None and RunFolder(folder).labels.is_file():
            return folder
    return None


def labels_for(model_path: Path, run_dir: Path | None) -> list[str]:
    sidecar = read_sidecar(model_path)
    if sidecar is not None:
        return [str(label) for label in sidecar["labels"]]
    if run_dir is None:
        raise EdgeclsError(f"no labels for {model_path}: expected a sidecar {model_path.with_suffix('.json').name} "
                           f"or {LABELS} in its run folder")
    return read_labels(run_dir)


def load_model_source(target):
    """Load a run folder's or .keras file's model; returns ``(keras model, ModelSource)``."""
    from edgecls.models.model_files import load_keras_model

    model_path, run_dir = locate(target)
    model = load_keras_model(model_path)  # first: a damaged file is the clearer error
    labels = labels_for(model_path, run_dir)
    check_outputs_match_labels(model.output_shape[-1], labels, model_path,
                               source="its sidecar" if run_dir is None else f"{run_dir / LABELS}")
    config = load_run_config(run_dir) if run_dir is not None and RunFolder(run_dir).is_run() else None
    return model, ModelSource(model_path, run_dir, labels, config)
