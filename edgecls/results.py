"""Every result type of edgecls: small documented types, each with ``to_dict()`` giving its ``--json`` record.

Every ``edgecls.api`` function returns one of these (or a list of them), and the stages below the
API return the same objects (the trainer a :class:`TrainResult`, the exports :class:`ExportRecord`,
the optimize search an :class:`OptimizeResult`); the CLI prints them, and ``edgecls <command> --json``
prints ``to_dict()`` (or the list of records) and nothing else. A core module: it imports nothing
of edgecls and no TensorFlow, so every layer may use it and importing it is as cheap as ``import edgecls``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

__all__ = ["BundleResult", "DemoResult", "DeviceCheckResult", "EvaluateResult", "ExportRecord", "ExtractResult", "GradcamResult", "OptimizeResult",
           "PruneResult", "Records", "SearchResult", "SearchWorkerResult", "TrainResult", "jsonable"]


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
class ExportRecord:
    """One exported model file, as ``edgecls.quantize`` / ``export`` / ``prune`` return it.

    ``path`` is the file (its sidecar is ``path.with_suffix(".json")``), ``size`` holds ``bytes`` and
    ``gzip_bytes``, ``accuracy``/``top5`` are measured on the run's test split through the deploy
    runtime (fractions; ``top5`` is None with 5 classes or fewer), ``notes`` says what else was seen
    (XNNPACK partitions, float ops, ONNX parity).

    Example::

        >>> record = edgecls.quantize("runs/flowers", int8=True)[0]  # doctest: +SKIP
        >>> record.path, record.accuracy  # doctest: +SKIP
        (PosixPath('runs/flowers/exports/int8.tflite'), 0.82)
    """

    variant: str
    path: Path
    size: dict
    accuracy: float
    top5: float | None
    notes: str = ""

    def to_dict(self) -> dict:
        """The JSON record ``--json`` prints: every field, the path as a string."""
        return {"variant": self.variant, "path": str(self.path), "size": dict(self.size), "accuracy": self.accuracy,
                "top5": self.top5, "notes": self.notes}


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


@dataclasses.dataclass
class DemoResult:
    """What ``edgecls demo`` (:func:`edgecls.demo.run_demo`) made: the training result, the chosen model, the bench
    rows and the closing table."""

    run_dir: Path
    metrics: dict
    chosen: Path | None
    bundle: Path
    stages: list[dict]  # stage, file, size_bytes, top1 (fraction or None), latency_ms (p50 or None)

    def to_dict(self) -> dict:
        return jsonable(dataclasses.asdict(self))


@dataclasses.dataclass
class ExtractResult:
    """An extracted dataset archive (:func:`edgecls.data.archive.extract_archive`): the folder it went
    to and the (entry, reason) pairs it left out (links, unsafe paths, special files, name clashes)."""

    root: Path
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict:
        return jsonable(dataclasses.asdict(self))


@dataclasses.dataclass
class DeviceCheckResult:
    """What ``edgecls device check`` found on a device (``edgecls.check_device``).

    ``machine`` is ``uname -m``; ``cpu`` the processor model (an Arm core's name from its part
    number) and ``board`` the device-tree model (a Pi's name); ``features`` says, per instruction
    set that decides XNNPACK's kernels (x86: avx2, avx512f, avx512_vnni, avx_vnni, amx_*; Arm: asimd,
    asimddp, fphp/asimdhp, i8mm, ...), whether the CPU has it; ``cpu_flags`` lists every SIMD flag it
    reports. ``runtimes`` maps ai-edge-litert, tflite-runtime, onnxruntime, numpy and pillow to their
    installed versions (None: not installed); ``missing`` holds one line per missing piece with the
    exact ``pip install`` to run on the device (nothing is installed there by edgecls); ``cache``
    is edgecls' folder on the device.

    Example::

        >>> result = edgecls.check_device("ssh://pi@raspberrypi.local")  # doctest: +SKIP
        >>> result.machine, result.cpu, result.features["asimddp"]  # doctest: +SKIP
        ('aarch64', 'Cortex-A72', False)
    """

    device: str
    machine: str
    cpu: str | None
    board: str | None
    features: dict
    cpu_flags: list
    cores: int | None
    memory_mb: int | None
    python: str
    python_executable: str
    runtimes: dict
    missing: list
    cache: str
    host: str | None = None
    system: str | None = None

    @property
    def ready(self) -> bool:
        """True when a TFLite model can be benchmarked there (a TFLite runtime, numpy and pillow)."""
        return not any(line.startswith("needed") for line in self.missing)

    def lines(self) -> list[str]:
        """The console report, one fact per line."""
        have = [name for name, present in self.features.items() if present]
        lack = [name for name, present in self.features.items() if not present]
        memory = f"{self.memory_mb / 1024:.1f} GB" if self.memory_mb else "unknown"
        runtimes = ", ".join(f"{name} {version or '-'}" for name, version in self.runtimes.items())
        return [f"device   {self.device} ({self.host or '?'}, {self.system or '?'} {self.machine})",
                f"cpu      {self.cpu or 'unknown'}" + (f" on {self.board}" if self.board else ""),
                f"has      {' '.join(have) or 'none of the kernel-deciding features'}",
                f"lacks    {' '.join(lack) or 'nothing edgecls looks for'}",
                f"cores    {self.cores or '?'}, memory {memory}",
                f"python   {self.python} ({self.python_executable})",
                f"runtimes {runtimes}",
                f"cache    {self.cache}"]

    def to_dict(self) -> dict:
        """The ``edgecls device check --json`` record."""
        return jsonable(dataclasses.asdict(self))


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


@dataclasses.dataclass
class OptimizeResult:
    """What an optimize search found (``edgecls.optimize``). ``leaderboard``: one record per candidate
    (see :mod:`edgecls.searching.variant_search`); ``chosen``: the record handed back (None when
    nothing is within budget); ``best_path``: its copy, RUN/exports/best.tflite or best.onnx;
    ``stop_reason``: why the search ended; ``closest``: the candidate with the smallest validation
    drop, what the summary names when nothing is within budget (None when nothing was measured).

    Example::

        >>> result = edgecls.optimize("runs/flowers", max_drop=0.5)  # doctest: +SKIP
        >>> result.chosen["variant"], result.best_path  # doctest: +SKIP
        ('int8', PosixPath('runs/flowers/exports/best.tflite'))
    """

    out_dir: Path
    leaderboard: list[dict]
    chosen: dict | None
    best_path: Path | None
    within_budget: bool
    stop_reason: str
    search_seconds: float
    max_drop: float = 0.5
    objective: str = "latency"
    float_val_accuracy: float | None = None
    closest: dict | None = None

    def summary_line(self) -> str:
        """One line for the console: the choice and why, or the closest candidate when nothing fits."""
        budget = f"budget {self.max_drop:g} pt of validation top-1 (absolute)"
        if self.chosen is not None:
            c = self.chosen
            return (f"chosen {c['variant']}: val top-1 {c['val_accuracy']:.4f} ({0.0 - c['val_drop_pt']:+.2f} pt, {budget}), "
                    f"{latency_text(c['latency_ms'])}, {c['gzip_bytes'] / 1024:,.0f} KB gzip, "
                    f"test top-1 {c['test_accuracy']:.4f} → {self.best_path}")
        near = self.closest
        if near is None:
            return f"no candidate was measured ({self.stop_reason})"
        return (f"nothing within {budget}; closest: {near['variant']} at {0.0 - near['val_drop_pt']:+.2f} pt "
                f"(val top-1 {near['val_accuracy']:.4f}, {latency_text(near['latency_ms'])})")

    def to_dict(self) -> list[dict]:
        """What ``edgecls optimize --json`` prints: the leaderboard, a list of records (the issue's
        contract). The search's own facts (stop reason, budget, float accuracy) are the fields of
        this result and the top of ``leaderboard.json``."""
        return [dict(record) for record in self.leaderboard]


@dataclasses.dataclass
class SearchResult:
    """What an architecture search found (``edgecls.search``). ``chosen``: the candidate handed back
    (a finalist's variant: ``config``, ``variant``, ``val_accuracy``, ``test_accuracy``, ``latency_ms``,
    ``size_bytes``, ``path``...), None when nothing meets the limits; ``best_path``: its copy,
    OUT/exports/best.tflite; ``closest``: what misses the limits by the least when nothing meets them;
    ``trials``: every trial as search.json holds it; ``by_latency_limit``: the best under each latency
    limit; ``stop_reason``: why training stopped.

    Example::

        >>> result = edgecls.search("data/flowers", "runs/search", max_latency_ms=5, max_size_kb=1024)  # doctest: +SKIP
        >>> result.chosen["config"]["key"], result.chosen["variant"], result.best_path  # doctest: +SKIP
        ('mobilenet_v3_small-a0.75-128px', 'int8', PosixPath('runs/search/exports/best.tflite'))
    """

    out_dir: Path
    chosen: dict | None
    best_path: Path | None
    within_limits: bool
    limits: dict
    closest: dict | None
    trials: list[dict]
    candidates: list[dict]
    by_latency_limit: list[dict]
    stop_reason: str
    search_seconds: float
    feasible: int = 0
    dropped: int = 0

    def summary_line(self) -> str:
        """One line: the choice and its figures, or what comes closest when nothing meets the limits."""
        limits = _limits_text(self.limits)
        if self.chosen is not None:
            c = self.chosen
            return (f"chosen {c['config']['key']} {c['variant']} (trial {c['trial']}): val top-1 {c['val_accuracy']:.4f}, "
                    f"{latency_text(c['latency_ms'])}, {c['size_bytes'] / 1024:,.0f} KB ({limits}); test top-1 "
                    f"{c['test_accuracy']:.4f} → {self.best_path}")
        near = self.closest
        if near is None:
            return f"nothing meets {limits}, and nothing was measured ({self.stop_reason})"
        what = f"{near['config']['key']} {near.get('variant') or near.get('format')}"
        trained = "" if near.get("val_accuracy") is None else f"val top-1 {near['val_accuracy']:.4f}, "
        return (f"nothing meets {limits}; closest: {what} ({trained}{latency_text(near.get('latency_ms'))}, "
                f"{near['size_bytes'] / 1024:,.0f} KB)")

    def to_dict(self) -> dict:
        """What ``edgecls search --json`` prints: the choice, the limits, every trial and candidate."""
        return jsonable({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})


@dataclasses.dataclass
class SearchWorkerResult:
    """What one ``edgecls search --join`` worker did: ``trials`` is the whole study as search.json holds it;
    this worker's are those whose ``run`` is under ``out_dir/trials``. ``storage``: the URL, password hidden."""

    out_dir: Path
    storage: str
    trials: list[dict]
    stop_reason: str
    seconds: float

    def mine(self) -> list[dict]:
        return [t for t in self.trials if t.get("run") and Path(t["run"]).parent == Path(self.out_dir) / "trials"]

    def summary_line(self) -> str:
        return (f"trained {len(self.mine())} trial(s) of the study at {self.storage} into {Path(self.out_dir) / 'trials'} "
                f"({self.stop_reason}); the search that started the study chooses the model")

    def to_dict(self) -> dict:
        """What ``edgecls search --join --json`` prints."""
        return jsonable({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})


def _limits_text(limits: dict) -> str:
    size = f" and {limits['max_size_kb']:g} KB" if limits.get("max_size_kb") is not None else ""
    return f"{limits['max_latency_ms']:g} ms{size}"


def latency_text(value) -> str:
    """A measured latency for the console (``1.234 ms``), or that it was not measured."""
    return "latency not measured" if value is None else f"{value:.3f} ms"
