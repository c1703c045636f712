"""Feasibility first, where the model will run: which configurations can meet the limits at all.

Before any training, each configuration is built, its BatchNorm statistics are set from a few
hundred training images (random-init statistics give int8 scale ratios that XNNPACK refuses, and
timings that say nothing of a trained model, ``../shared/DESIGN.md``), converted to float32 and
int8 TFLite, and timed side by side where it will run (here, or on ``--device``), with its file
size. A configuration none of whose formats meets every limit is dropped with its figures. Sizes
are tried smallest first, per architecture and width: once a size misses the latency limit in
every format, the larger sizes of that architecture and width are dropped without building them,
naming the size that was measured. Everything goes to ``OUT/feasibility.json`` and a table on stderr.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgecls.architecture_search.space import Config, SearchSpace
from edgecls.fsutil import atomic_path, write_json

FORMATS = ("int8", "float32")
BATCHNORM_IMAGES = 256
CALIBRATION_IMAGES = 64  # int8 ranges for timing only: the kernels and the graph do not depend on the count
FILE = "feasibility.json"


@dataclasses.dataclass(frozen=True)
class Limits:
    max_latency_ms: float
    max_size_kb: float | None = None

    def meets(self, latency_ms: float | None, size_bytes: int) -> bool:
        fast = latency_ms is not None and latency_ms <= self.max_latency_ms
        return fast and (self.max_size_kb is None or size_bytes / 1024 <= self.max_size_kb)

    def text(self) -> str:
        size = f", at most {self.max_size_kb:g} KB" if self.max_size_kb is not None else ""
        return f"at most {self.max_latency_ms:g} ms{size}"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class TimingSettings:
    threads: int = 1
    rounds: int = 3
    runs: int = 20
    warmup: int = 3


def check_space(space: SearchSpace, limits: Limits, *, images_at: Callable[[int], np.ndarray], num_classes: int,
                make_timer: Callable[[np.ndarray], object], out: Path, verbose: int = 1) -> list[dict]:
    """One record per configuration of ``space``: built, timed, sized, feasible or dropped and why.

    ``images_at(size)``: training images (uint8) at that size; ``make_timer(images)``: a
    :class:`edgecls.searching.measurement.Timer` (or DeviceTimer) for models of those images' size.
    """
    folder = out / "feasibility"
    records: list[dict] = []
    missed_at: dict[tuple, dict] = {}  # (arch, alpha, weights) -> the record of a size that missed the latency limit
    for index, config in enumerate(sorted(space.configs, key=lambda c: (c.arch, c.alpha, c.weights, c.img_size))):
        family = (config.arch, config.alpha, config.weights)
        if family in missed_at:
            record = _skipped(config, missed_at[family])
        else:
            record = _measure(config, limits, images_at(config.img_size), num_classes, make_timer, folder)
            # A larger input is slower, so it cannot meet a latency limit this size missed (an error says nothing of it).
            if not record.get("error") and not any(f["latency_ms"] <= limits.max_latency_ms
                                                   for f in record["formats"].values()):
                missed_at[family] = record
        records.append(record)
        if verbose:
            print(f"  feasibility {index + 1}/{len(space.configs)} {config.key}: {_figures(record)}"
                  f"{'' if record['feasible'] else ' — dropped'}", file=sys.stderr)
    return records


def _measure(config: Config, limits: Limits, images: np.ndarray, num_classes: int, make_timer, folder: Path) -> dict:
    from edgecls.converters.tflite_convert import convert
    from edgecls.errors import EdgeclsError
    from edgecls.tf import keras

    started = time.monotonic()
    record = {"config": config.to_dict(), "formats": {}, "feasible": False}
    try:
        model = untrained_model(config, num_classes, images)
        blobs = {"float32": convert(model, "float32"),
                 "int8": convert(model, "int8", calibration=images[:CALIBRATION_IMAGES])}
    except EdgeclsError as err:
        record.update(error=str(err), why=f"cannot be built or converted: {err}")
        return record
    finally:
        keras.backend.clear_session()  # a hundred configurations must not pile up in one graph
    timer = make_timer(images)
    paths = {}
    for fmt, blob in blobs.items():
        paths[fmt] = folder / config.key / f"{fmt}.tflite"
        paths[fmt].parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(paths[fmt]) as tmp:
            tmp.write_bytes(blob)
        timer.add(fmt, paths[fmt])
    timed = timer.time(list(FORMATS), rounds=timer.rounds)
    for fmt in FORMATS:
        latency, size = timed[fmt]["median_ms"], len(blobs[fmt])
        record["formats"][fmt] = {"latency_ms": latency, "p90_ms": timed[fmt]["p90_ms"],
                                  "spread_pct": timed[fmt]["spread_pct"], "size_bytes": size,
                                  "meets": limits.meets(latency, size), "path": str(paths[fmt])}
    meeting = [fmt for fmt in FORMATS if record["formats"][fmt]["meets"]]
    record.update(feasible=bool(meeting), where=dict(timer.where), seconds=round(time.monotonic() - started, 2),
                  why=(f"meets {limits.text()} as {' and '.join(meeting)}" if meeting
                       else f"misses {limits.text()} in every format: {_figures(record)}"))
    return record


def _skipped(config: Config, measured: dict) -> dict:
    smaller = measured["config"]
    return {"config": config.to_dict(), "formats": {}, "feasible": False, "skipped": True,
            "why": f"not built: at {smaller['img_size']} px it already missed the latency limit ({_figures(measured)})"}


def untrained_model(config: Config, num_classes: int, images: np.ndarray):
    """The configuration's graph with random weights and BatchNorm statistics of ``images``."""
    from edgecls.models import get_model_spec, modeling

    spec = get_model_spec(config.arch)
    model = modeling.build_model(config.arch, config.img_size, num_classes, weights="none", alpha=config.alpha)
    if spec.data_init is not None:
        spec.data_init(model, images)
    set_batchnorm_statistics(model, images[:BATCHNORM_IMAGES])
    return model


def set_batchnorm_statistics(model, images: np.ndarray, batch: int = 32) -> int:
    """Set every BatchNorm layer's moving mean and variance to the mean of its batch statistics over
    ``images``; returns the number of layers set.

    Momentum k/(k+1) on the k-th batch (0 on the first, which overwrites the initial zeros and
    ones) makes the moving statistics the running mean of the batches' own.
    """
    from edgecls.tf import keras

    layers = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    if not layers or len(images) == 0:
        return 0
    momentum = {layer.name: layer.momentum for layer in layers}
    try:
        for k, start in enumerate(range(0, len(images), batch)):
            for layer in layers:
                layer.momentum = k / (k + 1)
            model(np.asarray(images[start:start + batch], dtype=np.float32), training=True)
    finally:
        for layer in layers:
            layer.momentum = momentum[layer.name]
    return len(layers)


def fingerprint(space: SearchSpace, limits: Limits, timing: TimingSettings, where: dict) -> str:
    return json.dumps({"space": space.fingerprint(), "limits": limits.to_dict(), "threads": timing.threads,
                       "where": {k: where.get(k) for k in ("on", "cpu", "cpu_flags", "machine")}}, sort_keys=True)


def write_feasibility(out: Path, records: list[dict], meta: dict) -> Path:
    return write_json(out / FILE, {**meta, "configurations": records,
                                   "feasible": sum(1 for r in records if r["feasible"]),
                                   "dropped": sum(1 for r in records if not r["feasible"])})


def read_feasibility(out: Path, key: str) -> list[dict] | None:
    """The records of an earlier check of the same space, limits and target (None: check again)."""
    path = out / FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None
    return data.get("configurations") if data.get("fingerprint") == key else None


def queue_order(records: list[dict]) -> list[str]:
    """The feasible configurations in the order the study first trains them: one of each architecture in
    turn, each architecture's from its fastest (untrained int8) up. Every family gets a trial early, before
    the budget is spent on variations of the first, and the cheap ones first give the pruner early rungs
    to compare the rest against."""
    by_arch: dict[str, list[dict]] = {}
    for record in records:
        if record["feasible"]:
            by_arch.setdefault(record["config"]["arch"], []).append(record)
    lanes = [sorted(group, key=lambda r: (r["formats"].get("int8", {}).get("latency_ms") or float("inf"),
                                          r["config"]["key"])) for group in by_arch.values()]
    order = []
    for rank in range(max((len(lane) for lane in lanes), default=0)):
        order += [lane[rank]["config"]["key"] for lane in lanes if rank < len(lane)]
    return order


def closest(records: list[dict]) -> dict | None:
    """When nothing is feasible: the measured configuration and format nearest the latency limit."""
    measured = [(f["latency_ms"], r, fmt) for r in records for fmt, f in r["formats"].items() if f.get("latency_ms")]
    if not measured:
        return None
    latency, record, fmt = min(measured, key=lambda item: item[0])
    return {"config": record["config"], "format": fmt, **record["formats"][fmt]}


def print_table(records: list[dict], limits: Limits, where: dict | None) -> None:
    from rich.console import Console
    from rich.table import Table

    from edgecls.devices.machine_probe import where_text

    table = Table("", "configuration", "int8", "int8 size", "float32", "float32 size", "why",
                  title=f"feasibility: {limits.text()}",
                  caption=f"untrained models, BatchNorm statistics from training images; latency timed on {where_text(where)}")
    for r in records:
        cells = []
        for fmt in FORMATS:
            f = r["formats"].get(fmt)
            cells += ["", ""] if f is None else [f"{f['latency_ms']:.3f} ms" + ("" if f["meets"] else " ✗"),
                                                  f"{f['size_bytes'] / 1024:,.0f} KB"]
        table.add_row("✓" if r["feasible"] else "✗", r["config"]["key"], *cells, "" if r["feasible"] else r["why"])
    Console(stderr=True, width=None if sys.stderr.isatty() else 160).print(table)


def _figures(record: dict) -> str:
    if record.get("error"):
        return record["why"]
    if not record["formats"]:
        return record["why"]
    return ", ".join(f"{fmt} {f['latency_ms']:.3f} ms / {f['size_bytes'] / 1024:,.0f} KB"
                     for fmt, f in record["formats"].items())
