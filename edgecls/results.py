"""What the public API returns: small documented types, each with ``to_dict()`` giving its ``--json`` record.

Every ``edgecls.api`` function returns one of these (or a list of them); the CLI prints them, and
``edgecls <command> --json`` prints ``to_dict()`` (or the list of records) and nothing else. No
TensorFlow here: importing this module is as cheap as ``import edgecls``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from edgecls.converters.publishing import ExportRecord

# OptimizeResult (edgecls.searching.variant_search's) is served by __getattr__ below, on first use.
__all__ = ["BundleResult", "EvaluateResult", "ExportRecord", "GradcamResult", "PruneResult", "Records", "TrainResult",
           "jsonable"]


def jsonable(value: Any) -> Any:
    """``value`` with paths as strings, tuples as lists and numpy scalars/arrays as Python values."""
    if hasattr(value, "to_dict"):
        return jsonable(value.to_dict())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist") and type(value).__module__ == "numpy":
        return value.tolist()
    return value


@dataclasses.dataclass
class TrainResult:
    """A trained run: its folder and its test-split metrics.

    ``metrics`` is the run's ``metrics.json`` (``accuracy`` is top-1 on the test split, a fraction);
    it is empty on the workers of a multi-machine cluster that are not its chief.

    Example::

        >>> result = edgecls.train("data/flowers", "runs/flowers", arch="tiny_cnn", epochs=1)  # doctest: +SKIP
        >>> result.run_dir, result.metrics["accuracy"]  # doctest: +SKIP
        (PosixPath('runs/flowers'), 0.83)
    """

    run_dir: Path
    metrics: dict
    train_seconds: float
    epochs: int

    @property
    def accuracy(self) -> float | None:
        """Top-1 accuracy on the test split (None when there is no metrics.json, as on non-chief workers)."""
        return self.metrics.get("accuracy")

    def to_dict(self) -> dict:
        """The ``edgecls train --json`` record."""
        return jsonable({"run_dir": self.run_dir, "metrics": self.metrics, "train_seconds": self.train_seconds,
                         "epochs": self.epochs})


@dataclasses.dataclass
class EvaluateResult:
    """An evaluation: the folder its reports went to and its metrics (also in ``report_dir/metrics.json``).

    ``metrics`` holds ``accuracy``, ``top5_accuracy``, ``macro_f1``, ``num_samples`` and, for TTA or
    an ensemble, ``comparison``: every model's accuracy with and without TTA.

    Example::

        >>> result = edgecls.evaluate("runs/flowers", data="data/flowers/test")  # doctest: +SKIP
        >>> result.report_dir, result.metrics["accuracy"]  # doctest: +SKIP
        (PosixPath('runs/flowers/eval'), 0.81)
    """

    report_dir: Path
    metrics: dict

    @property
    def accuracy(self) -> float:
        """Top-1 accuracy of the final prediction (with TTA when TTA was asked for)."""
        return self.metrics["accuracy"]

    def to_dict(self) -> dict:
        """The ``edgecls evaluate --json`` record: the metrics, ``report_dir`` among them."""
        return jsonable(self.metrics)


@dataclasses.dataclass
class PruneResult:
    """A pruned model: ``path`` is ``RUN/exports/pruned.keras``; ``records`` the exports made from it.

    ``report`` is ``exports/pruning_report.json``: target and overall sparsity, per-layer sparsity,
    Keras top-1 of the pruned and of the float model (fractions, test split).

    Example::

        >>> result = edgecls.prune("runs/flowers", sparsity=0.5, epochs=2)  # doctest: +SKIP
        >>> result.path, result.report["overall_sparsity"]  # doctest: +SKIP
        (PosixPath('runs/flowers/exports/pruned.keras'), 0.49)
    """

    path: Path
    report: dict
    records: list[ExportRecord]

    def to_dict(self) -> dict:
        """The ``edgecls prune --json`` record."""
        return jsonable({"path": self.path, "report": self.report, "records": self.records})


@dataclasses.dataclass
class BundleResult:
    """A device bundle: the folder to copy to the device and the files in it."""

    path: Path
    target: str
    files: list[str]

    def to_dict(self) -> dict:
        return jsonable(dataclasses.asdict(self))


@dataclasses.dataclass
class GradcamResult:
    """Grad-CAM heatmaps: one record per image (``file``, ``png``, ``label``, ``class_index``, ``score``).

    ``skipped`` lists the (file, reason) pairs that were not usable images; ``out_dir`` holds the
    PNGs and ``gradcam.json``.
    """

    layer: str
    records: list[dict]
    skipped: list[tuple[str, str]]
    out_dir: Path

    def to_dict(self) -> dict:
        return jsonable({"layer": self.layer, "images": self.records, "skipped": self.skipped,
                         "out_dir": self.out_dir})


class Records(list):
    """A list of JSON-ready dicts — exactly what the command's ``--json`` prints — with what came beside them.

    ``notes`` are the one-line remarks the CLI prints on stderr (skipped files, ensembles...);
    ``skipped`` lists (file, reason) pairs that were left out; ``files`` the files written.

    Example::

        >>> records = Records([{"file": "a.jpg", "top_k": []}], notes=["note: ..."])
        >>> records[0]["file"], records.notes
        ('a.jpg', ['note: ...'])
    """

    def __init__(self, records=(), *, notes=(), skipped=(), files=()):
        super().__init__(records)
        self.notes: list[str] = list(notes)
        self.skipped: list[tuple[str, str]] = [tuple(item) for item in skipped]
        self.files: list[Path] = [Path(f) for f in files]

    def to_dict(self) -> list[dict]:
        """The records as a plain list (what ``--json`` prints)."""
        return jsonable(list(self))


def __getattr__(name: str):
    # OptimizeResult belongs to the optimize search (edgecls.searching.variant_search); imported on first use.
    if name == "OptimizeResult":
        from edgecls.searching.variant_search import OptimizeResult

        return OptimizeResult
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
