"""A trained run, read back from disk for the optimize stages: model, labels, data, reference accuracy."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from edgecls.config import RunConfig, load_run_config
from edgecls.errors import DataError, EdgeclsError
from edgecls.run_folder import RunFolder
from edgecls.sidecar import check_outputs_match_labels


@dataclasses.dataclass
class RunContext:
    run_dir: Path
    config: RunConfig
    model: object  # the float Keras model (model.keras, or --model)
    model_path: Path
    labels: list[str]
    data: object  # edgecls.training.data_prep.PreparedData

    @property
    def folder(self) -> RunFolder:
        return RunFolder(self.run_dir)

    @property
    def exports(self) -> Path:
        return self.folder.exports

    @property
    def img_size(self) -> int:
        return int(self.model.input_shape[1])

    def calibration_images(self, count: int, seed: int = 0) -> np.ndarray:
        """``count`` training images, drawn with a fixed seed so every export calibrates alike."""
        train = self.data.train.images
        if count < 1:
            raise EdgeclsError(f"--calibration must be at least 1, got {count}")
        pick = np.random.default_rng(seed).choice(len(train), size=min(count, len(train)), replace=False)
        return np.asarray(train[np.sort(pick)])

    @property
    def val_images(self) -> np.ndarray:
        """The validation split: what a search chooses on (the test split only reports)."""
        return self.data.val.images

    @property
    def val_labels(self) -> np.ndarray:
        return np.asarray(self.data.val.labels)

    @property
    def test_images(self) -> np.ndarray:
        return self.data.test.images

    @property
    def test_labels(self) -> np.ndarray:
        return np.asarray(self.data.test.labels)


def load_run(run_dir, model_path=None, *, verbose: int = 1) -> RunContext:
    from edgecls.models.model_files import load_keras_model, read_labels
    from edgecls.training.data_prep import prepare_data

    run_dir = Path(run_dir)
    folder = RunFolder(run_dir)
    if not run_dir.is_dir() or not folder.is_run():
        raise EdgeclsError(f"not a run folder (no {folder.config.name}): {run_dir}")
    config = load_run_config(run_dir)
    model_path = Path(model_path) if model_path else folder.model
    if not model_path.is_absolute() and not model_path.exists():
        model_path = run_dir / model_path
    model = load_keras_model(model_path)
    labels = read_labels(run_dir)
    check_outputs_match_labels(model.output_shape[-1], labels, model_path, source=str(folder.labels))
    config.data.img_size = int(model.input_shape[1])
    data = prepare_data(config, None, verbose=0)
    if len(data.test.labels) == 0:
        raise DataError(f"{run_dir} has no test split to measure accuracy on (data.test_fraction is 0 and "
                        "the dataset has no test/ folder)")
    if verbose:
        print(f"{run_dir}: {model_path.name} ({config.model.arch}, {config.data.img_size}px), "
              f"{len(data.test.labels)} test images")
    return RunContext(run_dir, config, model, model_path, labels, data)
