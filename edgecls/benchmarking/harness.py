"""``edgecls bench``: latency, memory and accuracy of each model in each runtime that can run it.

Per (model, runtime) row, in this order:
  load      ``open_model`` timed (runtime libraries are imported before, so it is the model alone);
  accuracy  top-1/top-5 on DIR's test images through ``Runtime.predict``, the same call predict uses;
  latency   ``Runtime.invoke`` on one image prepared beforehand, after a warm-up, in R rounds: for
            TFLite that is set_tensor + invoke + get_tensor and nothing else;
  end-to-end  file → ``load_rgb`` → ``resize_rgb`` → prepare → invoke → softmax → arg-max, per file,
            on a sample of DIR (preprocess_ms is the part before invoke);
  memory    the peak resident set while the row ran (reset before it on Linux), and its growth.
Exports are compared with their Keras reference: the share of images with the same top-1 label.

Without DIR only latency and load are measured: ``invoke`` is timed on synthetic pixels of the
model's own input shape (seeded, so reruns time the same input), and the row says so
(``input: "synthetic"``, ``accuracy: null``, ``accuracy_measured: false``); a latency needs no
labelled images, so refusing it made a quick "how fast is this file here?" impossible.
"""

from __future__ import annotations

import functools
import gc
import json
import os
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgecls import formats
from edgecls.benchmarking.device_rows import read_device_records
from edgecls.benchmarking.parity import Answers, add_parity
from edgecls.benchmarking.targets import Target, reference_for, resolve_targets
from edgecls.benchmarking.timing import current_rss_mb, latency_fields, peak_rss_mb, reset_peak_rss
from edgecls.data.images import load_image_array
from edgecls.deploy.runtimes import open_model
from edgecls.devices.machine_probe import host_description, host_where
from edgecls.errors import DataError, EdgeclsError
from edgecls.metrics import top1_accuracy, top_k_or_none
from edgecls.progress import PhasedProgress
from edgecls.results import Records
from edgecls.run_folder import EXPORTS, MODEL
from edgecls.timing import interleaved_latency, percentiles_ms

SCHEMA = "edgecls.bench/1"
NO_DATA_NOTE = ("no --data: latency timed on synthetic input of each model's own shape; "
                "accuracy not measured (give --data DIR to measure it)")
SYNTHETIC_SEED = 0
MEDIAPIPE = "mediapipe"  # the runtime name of MediaPipe Tasks' answers in --parity pairs
TEST_ONLY = {"train": 0.0, "val": 0.0, "test": 1.0}


@dataclass
class _Data:
    root: str
    classes: list[str]
    paths: list[str]
    labels: list[int]
    by_size: dict = field(default_factory=dict)  # (h, w) -> DecodedSplit
    skipped: int = 0


def bench(models=(), *, data=None, runtime: str = "all", threads: int = 1, runs: int = 50, rounds: int = 5,
          warmup: int = 10, e2e_images: int = 50, reference=None, imports=(), progress: bool = True,
          parity: bool | None = None, parity_table: bool = False, device_rows=()) -> Records:
    """Benchmark ``models`` (files or run folders) on ``data``; add device rows from ``imports``.

    One record per (model, runtime), device rows last; ``notes`` of the :class:`Records` are the
    remarks for stderr (parity, unusable images).

    ``parity`` (default: on for ``runtime`` all/keras or when ``reference`` is given) adds each
    export's top-1 agreement with its Keras reference. ``parity_table`` (``--parity``) also compares
    every two runtimes that ran one model on the images, MediaPipe Tasks on each .tflite where it is
    installed (edgecls.benchmarking.parity): each row's ``parity`` lists its pairs. ``device_rows``
    (``bench_on_device(..., answers=True)``) join the rows, and their answers the table.
    """
    if threads < 1 or runs < 1 or rounds < 1 or warmup < 0 or e2e_images < 0:
        raise EdgeclsError("--threads, --runs and --rounds must be at least 1; --warmup, --e2e-images at least 0")
    notes: list[str] = []
    records = [record for path in imports for record in read_device_records(path)]
    if not models:
        if not records:
            raise EdgeclsError("give a MODEL (file or run folder) to benchmark, or --import a device bench file")
        return Records(records, notes=notes)
    targets = resolve_targets(models, runtime)
    dataset = None if data is None else find_test_images(data)
    if dataset is None:
        notes.append(f"note: {NO_DATA_NOTE}")
        if parity_table:
            notes.append("note: --parity compares answers on images: give --data DIR")
        parity = parity_table = False  # agreement is over labelled images: none here
    elif parity is None:
        parity = runtime in ("all", "keras") or reference is not None
    with_mediapipe = parity_table and _mediapipe_here(notes)

    predictions: dict[Path, dict[str, str]] = {}
    host_rows: list = [None] * len(targets)
    answers: dict[int, list[Answers]] = {}
    # Keras rows run last: TensorFlow, once imported, stays in the process and would inflate the
    # memory of every row after it. The table keeps the order the models were given in.
    order = sorted(range(len(targets)), key=lambda i: targets[i].runtime == "keras")
    with PhasedProgress(enabled=progress) as bar:
        for number, index in enumerate(order, start=1):
            target = targets[index]
            bar.start_row(f"[{number}/{len(targets)}] {display_name(target.path)} ({target.runtime})")
            record, predicted, scored = _bench_row(target, dataset, threads, runs, rounds, warmup, e2e_images, bar,
                                                   notes, mediapipe=with_mediapipe)
            predictions[target.path.resolve()] = predicted
            host_rows[index] = record
            if parity_table:
                answers[index] = _answers(target, record, scored, reference, index)
        if parity:
            _add_agreement(targets, host_rows, predictions, dataset, reference, threads, bar, notes)
    device_rows = [dict(row) for row in device_rows]
    device_answers = [row.pop("answers", None) for row in device_rows]
    if parity_table:
        found = [a for index in range(len(targets)) for a in answers.get(index, [])]
        found += [_device_answers(row, given, dataset, reference, len(host_rows) + number)
                  for number, (row, given) in enumerate(zip(device_rows, device_answers)) if given]
        _add_parity(host_rows + device_rows, found)
    if dataset is not None and dataset.skipped:
        notes.append(f"note: {dataset.skipped} file(s) in {data} are not usable images and were left out")
    return Records(host_rows + device_rows + records, notes=notes)


def find_test_images(data) -> _Data:
    """The test split of ``data`` (a dataset with test/, or class folders taken whole): paths, labels, classes."""
    from edgecls.data.layout import find_dataset

    found = find_dataset(data, fractions=TEST_ONLY)
    paths, labels = found.splits["test"]
    if not paths:
        raise DataError(f"no test images in {data}")
    return _Data(str(data), list(found.classes), [os.fspath(p) for p in paths], list(labels))


def _decoded(dataset: _Data, size, bar):
    from edgecls.data.decode import decode_split, default_cache_root

    size = (int(size[0]), int(size[1]))
    if size not in dataset.by_size:
        bar.phase(f"decoding {len(dataset.paths)} images at {size[0]}×{size[1]}")
        split = decode_split(dataset.paths, dataset.labels, size, cache_root=default_cache_root(), progress=False)
        if not split.paths:
            raise DataError(f"none of the {len(dataset.paths)} files in {dataset.root} is a usable image")
        dataset.by_size[size] = split
        dataset.skipped = len(split.bad)
    return dataset.by_size[size]


def _answers(target: Target, record: dict, scored, reference, index: int) -> list[Answers]:
    """A row's answers for --parity, grouped by the model they come from: the Keras reference, else the file."""
    source = target.path if target.is_reference else (reference_for(target.path, reference) or target.path)
    return [Answers(record["name"], runtime, record["model"], str(Path(source).resolve()), *found, owner=index)
            for runtime, *found in scored]


def _device_answers(row: dict, given: dict, dataset: _Data, reference, owner: int) -> Answers:
    """A device row's answers (pi_infer.py --bench --answers) in the data's class order, grouped as a host row's."""
    class_of = dict(zip(dataset.paths, dataset.labels))
    paths = [path for path in given["files"] if path in class_of]
    probs = np.asarray([p for path, p in zip(given["files"], given["probs"]) if path in class_of], dtype=np.float64)
    columns = [list(given["labels"]).index(c) for c in dataset.classes]
    path = Path(row["model"])
    source = reference_for(path, reference) or path
    on = (row.get("where") or {}).get("on", "device")
    return Answers(row["name"], f"{row.get('backend') or 'tflite'} on {on}", row["model"], str(Path(source).resolve()),
                   paths, probs.reshape(len(paths), -1)[:, columns] if paths else probs.reshape(0, len(columns)),
                   np.asarray([class_of[p] for p in paths]), owner=owner)


def _add_parity(rows: list[dict], answers: list[Answers]) -> None:
    for later in (a for a in answers if callable(a.probs)):  # MediaPipe's, asked for now (see _bench_row)
        later.probs = later.probs()
    add_parity(rows, answers)


def _mediapipe_probs(path, images, classes: int, logits: bool, label_of) -> np.ndarray:
    from edgecls.deploy import mediapipe_client

    return mediapipe_client.probabilities(path, images, classes, logits=logits)[:, label_of]


def _mediapipe_here(notes) -> bool:
    from edgecls.deploy import mediapipe_client

    if mediapipe_client.available():
        return True
    notes.append(f"note: --parity without MediaPipe Tasks ({mediapipe_client.why_not()}): its column is left out")
    return False


def _bench_row(target: Target, dataset: _Data | None, threads, runs, rounds, warmup, e2e_images, bar, notes, *,
               mediapipe: bool = False):
    """(record, {path: label}, [(runtime, paths, probabilities in the data's class order, truth)]) of one row."""
    backend = _import_runtime(target.runtime)
    hint = input_size_hint(target.path)
    if hint is not None and dataset is not None:  # decoded and paged in before the memory of the row is measured
        _touch(_decoded(dataset, hint, bar).images)
    gc.collect()
    peak_reset = reset_peak_rss()
    rss_before = current_rss_mb()
    bar.phase("loading")
    t0 = time.perf_counter()
    model = open_model(target.path, threads=threads)
    load_ms = (time.perf_counter() - t0) * 1e3

    if dataset is None:
        split, one = None, synthetic_image(model.input_size)
        bar.plan(warmup + runs * rounds)
        probs, accuracy, top5 = None, None, None
    else:
        split = _decoded(dataset, model.input_size, bar)
        label_of = _label_map(dataset.classes, model, notes)
        bar.plan(len(split.paths) + warmup + runs * rounds + min(e2e_images, len(split.paths)))
        bar.phase("accuracy")
        probs = _predict_all(model, split.images, bar.advance)
        y_true = np.asarray([label_of[c] for c in split.labels])
        accuracy, top5 = top1_accuracy(y_true, probs), top_k_or_none(y_true, probs)
        one = np.ascontiguousarray(split.images[:1])

    bar.phase("latency")
    prepared = model.prepare(one)
    # partial, not a lambda: a C-level call adds the least to what is timed.
    stats = interleaved_latency({"invoke": functools.partial(model.invoke, prepared)}, rounds=rounds, runs=runs,
                                warmup=warmup, advance=bar.advance)["invoke"]

    pre_ns = e2e_ns = ()  # end to end starts from image files: none without --data
    if split is not None:
        bar.phase("end-to-end")
        pre_ns, e2e_ns = _end_to_end(model, spread_sample(split.paths, e2e_images), bar.advance)

    peak = peak_rss_mb()
    labels = model.labels
    predicted = {} if split is None else {path: labels[i] for path, i in zip(split.paths, probs.argmax(axis=1))}
    scored = []
    if split is not None:
        truth = np.asarray(split.labels)
        scored.append((target.runtime, list(split.paths), probs[:, label_of], truth))
        if mediapipe and target.runtime == "tflite":
            # Asked for after every row: MediaPipe runs in a Python of its own, which would share the cores with
            # the rows being timed.
            scored.append((MEDIAPIPE, list(split.paths), functools.partial(
                _mediapipe_probs, target.path, split.images, len(labels), model.output_kind == "logits", label_of),
                truth))
    sidecar = model.sidecar or {}
    record = {
        "schema": SCHEMA,
        "model": str(target.path),
        "name": display_name(target.path),
        "variant": sidecar.get("variant") or ("float32" if target.runtime == "keras" else target.path.stem),
        "format": target.path.suffix.lstrip("."),
        "runtime": target.runtime,
        "backend": backend,
        "role": "reference" if target.is_reference else "export",
        "source": "host",
        **machine_info(),
        "where": host_where(),
        "threads": int(threads),
        "input_size": list(model.input_size),
        "batch": 1,
        "size_bytes": target.path.stat().st_size,
        "load_ms": load_ms,
        "peak_rss_mb": peak,
        "rss_growth_mb": (peak - rss_before) if (peak is not None and rss_before is not None and peak_reset) else None,
        **latency_fields(stats, runs=runs, warmup=warmup),
        "preprocess_ms": percentiles_ms(pre_ns),
        "end_to_end_ms": percentiles_ms(e2e_ns),
        "input": "synthetic" if split is None else "images",
        "data": None if dataset is None else dataset.root,
        "images": 0 if split is None else len(split.paths),
        "accuracy_measured": split is not None,
        "accuracy": accuracy,
        "top5_accuracy": top5,
        "agreement": None,
        "reference": None,
    }
    del model, prepared
    gc.collect()
    return record, predicted, scored


def synthetic_image(size) -> np.ndarray:
    """One seeded batch-1 RGB uint8 image of ``size`` (height, width): the input every model takes."""
    height, width = int(size[0]), int(size[1])
    return np.random.default_rng(SYNTHETIC_SEED).integers(0, 256, (1, height, width, 3), dtype=np.uint8)


def input_size_hint(path: Path):
    """(height, width) from the sidecar or a .keras file's config, without loading the model."""
    from edgecls.sidecar import read_sidecar

    try:
        shape = ((read_sidecar(path) or {}).get("input") or {}).get("shape")
        if shape and all(isinstance(v, int) for v in shape[1:3]):
            return int(shape[1]), int(shape[2])
        if path.suffix == ".keras":
            with zipfile.ZipFile(path) as archive:
                config = json.loads(archive.read("config.json"))
            for layer in config["config"]["layers"]:
                if layer.get("class_name") == "InputLayer":
                    layer_config = layer["config"]
                    shape = layer_config.get("batch_input_shape") or layer_config.get("batch_shape")
                    return int(shape[1]), int(shape[2])
    except (OSError, ValueError, KeyError, TypeError, IndexError, zipfile.BadZipFile, EdgeclsError):
        pass  # loading the model will say what is wrong with it
    return None


def _touch(images) -> None:
    for start in range(0, len(images), 256):
        np.asarray(images[start:start + 256]).max()


def _import_runtime(runtime: str) -> str:
    """Import the runtime's library up front (so load_ms is the model alone); say which one it is."""
    return formats.load(formats.get(runtime, role="runtime").version)()


def _label_map(classes, model, notes) -> list[int]:
    """Dataset class index -> model output index, matched by name."""
    labels = model.labels
    missing = [c for c in classes if c not in labels]
    if not missing:
        return [labels.index(c) for c in classes]
    if model.sidecar is None and len(classes) == len(labels):
        notes.append(f"note: {model.path.name} has no labels; assuming its outputs follow the sorted class folders")
        return list(range(len(classes)))
    raise DataError(f"class '{missing[0]}' of the data is not among the labels of {model.path} "
                    f"({', '.join(labels[:6])}{', ...' if len(labels) > 6 else ''})")


def _predict_all(model, images, advance, chunk: int = 64) -> np.ndarray:
    outputs = []
    for start in range(0, len(images), chunk):
        batch = np.ascontiguousarray(images[start:start + chunk])
        outputs.append(model.predict(batch))
        advance(len(batch))
    return np.concatenate(outputs)


def spread_sample(paths, count: int) -> list:
    """``count`` items spread evenly over ``paths`` (all of them when there are no more)."""
    if count >= len(paths):
        return list(paths)
    return [paths[i] for i in np.linspace(0, len(paths) - 1, count).round().astype(int)]


def _end_to_end(model, files, advance) -> tuple[np.ndarray, np.ndarray]:
    size = model.input_size
    clock = time.perf_counter_ns
    pre = np.empty(len(files), dtype=np.int64)
    total = np.empty(len(files), dtype=np.int64)
    for i, name in enumerate(files):
        t0 = clock()
        prepared = model.prepare(load_image_array(name, size)[None])
        t1 = clock()
        int(model.finish(model.invoke(prepared)).argmax())
        t2 = clock()
        pre[i], total[i] = t1 - t0, t2 - t0
    advance(len(files))
    return pre, total


def _add_agreement(targets, rows, predictions, dataset, explicit, threads, bar, notes) -> None:
    for target, row in zip(targets, rows):
        if target.is_reference:
            continue
        ref = reference_for(target.path, explicit)
        if ref is None:
            notes.append(f"note: no Keras reference found for {row['name']} (sidecar source_run, the run folder "
                         "around exports/, or --reference): agreement not measured")
            continue
        key = ref.resolve()
        if key not in predictions:
            bar.start_row(f"reference {display_name(ref)} (keras)")
            _import_runtime("keras")
            model = open_model(ref, threads=threads)
            split = _decoded(dataset, model.input_size, bar)
            bar.plan(len(split.paths))
            bar.phase("predicting")
            probs = _predict_all(model, split.images, bar.advance)
            predictions[key] = {p: model.labels[i] for p, i in zip(split.paths, probs.argmax(axis=1))}
            del model
        ours, theirs = predictions[target.path.resolve()], predictions[key]
        common = [p for p in ours if p in theirs]
        if common:
            row["agreement"] = float(np.mean([ours[p] == theirs[p] for p in common]))
            row["reference"] = str(ref)


def display_name(path) -> str:
    path = Path(path)
    if path.parent.name == EXPORTS:
        return f"{path.parent.parent.name}/{path.name}"
    if path.name == MODEL and path.parent.name:
        return f"{path.parent.name}/{path.name}"
    return path.name


def machine_info() -> dict:
    """Where a measurement was made: machine type, host name, CPU model and Python version
    (:func:`edgecls.devices.machine_probe.describe`, the probe a device runs too)."""
    described = host_description()
    return {"machine": described["machine"], "host": described["host"], "cpu": described["cpu"],
            "python": described["python"]}
