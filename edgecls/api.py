"""The public Python API: everything the ``edgecls`` command line does, as documented functions.

Each function does one job, reads what the stage before it wrote from disk, and returns a result
type from :mod:`edgecls.results` whose ``to_dict()`` is exactly what ``edgecls <command> --json``
prints. TensorFlow is imported inside the functions (through ``edgecls.tf``), never at import time.
User mistakes raise :class:`edgecls.errors.EdgeclsError` with a one-line message.

**One writer per run.** Every function that writes into a run folder holds its lock
(:mod:`edgecls.run_lock`) while it works. Their ``wait`` argument says what to do when another
edgecls process holds it: wait (the default, with a one-line note on stderr), or, with
``wait=False``, raise :class:`edgecls.run_lock.RunBusyError` naming that process's PID.

Example (the README's "Python API" section runs this end to end)::

    >>> import edgecls
    >>> run = edgecls.train("data/flowers", "runs/flowers", arch="tiny_cnn", img_size=32, epochs=2,
    ...                     weights="none")  # doctest: +SKIP
    >>> int8 = edgecls.quantize(run.run_dir, int8=True)[0]  # doctest: +SKIP
    >>> edgecls.predict(int8.path, "photo.jpg", top_k=3)[0]["top_k"][0]["label"]  # doctest: +SKIP
    'daisy'
"""

from __future__ import annotations

import contextlib
import copy
import os
import sys
from collections.abc import Iterable
from pathlib import Path

from edgecls.converters.calibration import DEFAULT_CALIBRATION
from edgecls.errors import EdgeclsError
from edgecls.fsutil import check_writable_folder
from edgecls.results import (
    BundleResult,
    DeviceCheckResult,
    EvaluateResult,
    ExportRecord,
    GradcamResult,
    OptimizeResult,
    PruneResult,
    Records,
    SearchResult,
    SearchWorkerResult,
    TrainResult,
)
from edgecls.training.fine_tune import DEFAULT_OPTIMIZER as DEFAULT_FINE_TUNE_OPTIMIZER

__all__ = ["train", "evaluate", "quantize", "prune", "export", "optimize", "search", "predict", "bench", "bundle",
           "gradcam", "report", "list_models", "check_device"]



def train(data=None, out=None, *, config=None, arch: str | None = None, img_size: int | None = None,
          epochs: int | None = None, weights: str | None = None, alpha: float | None = None,
          head_epochs: int | None = None, batch_size: int | None = None, lr: float | None = None,
          fine_tune_lr: float | None = None, fine_tune_layers: int | None = None, optimizer: str | None = None,
          label_smoothing: float | None = None, mixup: float | None = None, augment: bool = True,
          patience: int | None = None, reduce_lr_on_plateau: bool | None = None, val_fraction: float | None = None,
          test_fraction: float | None = None, seed: int | None = None, precision: str | None = None,
          mixed_precision: bool | None = None, strategy: str | None = None, tensorboard: bool | None = None,
          overrides: dict | None = None, force: bool = False, resume: bool = False, wait: bool = True,
          verbose: int = 1) -> TrainResult:
    """Train a classifier on ``data`` into the run folder ``out``; returns the run folder and its metrics.

    ``data`` is a folder of class folders, a folder with ``train/`` (``val/``) ``test/``, or a
    ``.zip``/``.tar(.gz)`` of either. ``config`` is a recipe: a YAML file, a shipped recipe name
    (``edgecls recipes``), a dict of sections (``{"train": {"epochs": 3}}``) or a
    :class:`edgecls.config.RunConfig`. Keyword arguments that are not None override it, as the
    command-line flags do; ``overrides`` sets any other option (``{"data": {"cache_dir": ...}}``).
    ``augment=False`` turns every augmentation off (MixUp keeps its setting). ``out`` defaults
    to ``runs/<data name>``. An existing run is refused unless ``force`` (replace it) or ``resume``
    (continue it from its last completed epoch, with its own config.yaml). ``weights`` defaults to
    ``auto``: ImageNet weights where the architecture has published ones, else from scratch.
    ``tensorboard=False`` writes no ``RUN/tensorboard/`` logs. ``wait``: see *One writer per run* above.

    Example::

        >>> result = edgecls.train("data/flowers", "runs/flowers", arch="tiny_cnn", img_size=32,
        ...                        epochs=2, weights="none")  # doctest: +SKIP
        >>> result.run_dir, result.metrics["accuracy"]  # doctest: +SKIP
        (PosixPath('runs/flowers'), 0.83)
        >>> edgecls.train("cifar10.tar.gz", "runs/cifar10", config="cifar10_resnet9", epochs=5)  # doctest: +SKIP
    """
    from edgecls import config as cfg

    flags = {
        "data": {"path": None if data is None else os.fspath(data), "img_size": img_size,
                 "val_fraction": val_fraction, "test_fraction": test_fraction, "seed": seed},
        "model": {"arch": arch, "weights": weights, "alpha": alpha},
        "train": {"epochs": epochs, "head_epochs": head_epochs, "batch_size": batch_size, "lr": lr,
                  "fine_tune_lr": fine_tune_lr, "fine_tune_layers": fine_tune_layers, "optimizer": optimizer,
                  "label_smoothing": label_smoothing, "early_stopping_patience": patience,
                  "reduce_lr_on_plateau": reduce_lr_on_plateau, "seed": seed, "tensorboard": tensorboard,
                  **cfg.precision_overrides(precision, mixed_precision)},
        "augment": {"mixup": mixup},
    }
    flags = {section: {k: v for k, v in values.items() if v is not None} for section, values in flags.items()}
    run_config = _run_config(config)
    cfg.apply_overrides(run_config, flags, source="arguments")
    if overrides:
        cfg.apply_overrides(run_config, overrides, source="overrides")
    if not augment:
        run_config.augment = cfg.AugmentConfig(flip=False, rotation=0, zoom=0, translate=0, brightness=0,
                                               contrast=0, saturation=0, crop_pad=0, cutout=0,
                                               mixup=run_config.augment.mixup)
    if out is None:
        if not run_config.data.path:
            raise EdgeclsError("give DATA (or --config with data.path) and --out")
        out = Path("runs") / Path(run_config.data.path.rstrip("/")).name.split(".")[0]
    if not resume and not run_config.data.path:
        raise EdgeclsError("give the DATA folder or archive to train on")
    if not resume:  # before the trainer prepares (with --force: empties) the run folder
        from edgecls.models import get_model_spec

        get_model_spec(run_config.model.arch).check_alpha(run_config.model.alpha)
    if resume and (any(flags.values()) or overrides or not augment) and verbose:
        print("note: --resume continues with the run's own config.yaml; other flags are ignored", file=sys.stderr)

    from edgecls.training.trainer import train as run_training

    result = run_training(run_config, Path(out), resume=resume, force=force, verbose=verbose, strategy=strategy,
                          wait=wait)
    if result.metrics:  # only the process that writes the run folder (the chief of a cluster) has metrics
        _refresh_report(result.run_dir)
    return result


def _run_config(config):
    from edgecls import config as cfg

    if config is None:
        return cfg.from_dict({}, source="defaults")
    if isinstance(config, cfg.RunConfig):
        return copy.deepcopy(config)  # the caller's object is left as it was
    if isinstance(config, dict):
        return cfg.from_dict(copy.deepcopy(config), source="config")
    return cfg.from_dict(cfg.load_yaml(os.fspath(config)), source=os.fspath(config))


def evaluate(runs_or_models, data=None, out=None, *, tta: bool | int = False, wait: bool = True,
             verbose: int = 1) -> EvaluateResult:
    """Evaluate run folders or .keras files: top-1/top-5, per-class P/R/F1, confusion matrix, mistakes.

    Several models make an ensemble (the mean of their probabilities). ``data`` defaults to the
    first run's test split. ``tta=True`` averages 8 fixed views per image (an int chooses the
    number of views); every model's accuracy with and without TTA is kept under
    ``metrics["comparison"]``. Reports go to ``out`` (default ``RUN/eval``, or
    ``RUN_A/eval_ensemble`` for an ensemble). ``wait``: see *One writer per run* above.

    Example::

        >>> result = edgecls.evaluate("runs/flowers", data="data/flowers/test", tta=True)  # doctest: +SKIP
        >>> result.metrics["accuracy"], result.metrics["accuracy_without_tta"]  # doctest: +SKIP
        (0.84, 0.82)
    """
    from edgecls.insight.evaluation import evaluate as run_evaluation
    from edgecls.insight.tta import DEFAULT_COUNT

    if isinstance(tta, bool) or tta is None:
        count = DEFAULT_COUNT if tta else 0
    else:
        count = int(tta)
        if count < 0:
            raise EdgeclsError(f"tta must be a number of views (at least 1) or True/False, got {tta}")
    targets = [runs_or_models] if isinstance(runs_or_models, (str, os.PathLike)) else list(runs_or_models)
    if out is not None:
        check_writable_folder(out, what="--out")
    with _writing(*targets, wait=wait):
        metrics = run_evaluation(targets, None if data is None else os.fspath(data),
                                 None if out is None else os.fspath(out), tta=count, verbose=verbose)
        _refresh_report(*targets)
    return EvaluateResult(Path(metrics["report_dir"]), metrics)


def quantize(run, *, int8: bool | None = None, qat: bool = False, float16: bool = False, dynamic: bool = False,
             io: str = "uint8", calibration: int = DEFAULT_CALIBRATION, epochs: int = 3, lr: float | None = None,
             batch_size: int | None = None, model=None, preserve_sparsity: bool = False,
             fine_tune_optimizer: str = DEFAULT_FINE_TUNE_OPTIMIZER, tensorboard: bool | None = None,
             wait: bool = True, verbose: int = 1) -> list[ExportRecord]:
    """Quantize a run's model to TFLite; returns one :class:`~edgecls.results.ExportRecord` per file written.

    ``int8`` (the default when no other variant is asked for) is full-integer post-training int8
    calibrated on ``calibration`` training images; ``qat`` trains quantization-aware for
    ``epochs`` with ``fine_tune_optimizer`` at ``lr``, then converts to int8
    (``fine_tune_optimizer``: ``"adam"``, or ``"recipe"``, the run's own training optimizer; ``lr``
    None: 1e-4 for Adam, the rate the recipe's schedule ended at for the recipe; the sidecar's
    ``qat`` records both); ``float16`` and ``dynamic`` are the other post-training variants.
    ``io`` is the int8 model's input/output type (uint8, int8, float).
    ``model`` quantizes another model of the run (e.g. ``exports/pruned.keras``). Files land in
    ``RUN/exports/<variant>.tflite`` with a sidecar ``<variant>.json``; each record holds the
    accuracy measured on the test split. QAT logs to ``RUN/tensorboard/qat`` unless ``tensorboard``
    is False (None: as the run was trained). ``wait``: see *One writer per run* above.

    Example::

        >>> records = edgecls.quantize("runs/flowers", int8=True)  # doctest: +SKIP
        >>> records[0].path, records[0].accuracy  # doctest: +SKIP
        (PosixPath('runs/flowers/exports/int8.tflite'), 0.82)
    """
    from edgecls.compression.quantization import quantize_run

    if int8 is None:
        int8 = not (qat or float16 or dynamic)
    with _writing(run, wait=wait):
        records = quantize_run(run, int8=int8, qat=qat, float16=float16, dynamic=dynamic, io=io,
                               calibration=calibration, epochs=epochs, lr=lr, batch_size=batch_size, model=model,
                               preserve_sparsity=preserve_sparsity, optimizer=fine_tune_optimizer,
                               tensorboard=tensorboard, verbose=verbose)
        _refresh_report(run)
    return list(records)


def export(run, formats: str | Iterable[str] = "tflite", *, int8: bool = False, opset: int = 17,
           calibration: int = DEFAULT_CALIBRATION, model=None, wait: bool = True, verbose: int = 1) -> list[ExportRecord]:
    """Export a run's model to TFLite, ONNX and/or SavedModel; returns one ExportRecord per file or folder.

    ``formats`` is one name or several (``"tflite"``, ``"onnx"``, ``"saved_model"``, ``"all"``, or
    a comma-separated string). ``int8`` adds the int8 variant of each format that has one. Every
    export is checked (ONNX against Keras) and measured on the test split. ``wait``: see *One writer per run* above.

    Example::

        >>> records = edgecls.export("runs/flowers", ["tflite", "onnx"])  # doctest: +SKIP
        >>> [r.path.name for r in records]  # doctest: +SKIP
        ['float32.tflite', 'onnx_float32.onnx']
    """
    from edgecls.converters.exports import export_run

    names = [formats] if isinstance(formats, str) else list(formats)
    names = [part.strip() for item in names for part in str(item).split(",") if part.strip()]
    with _writing(run, wait=wait):
        records = export_run(run, formats=names, int8=int8, opset=opset, calibration=calibration, model=model,
                             verbose=verbose)
        _refresh_report(run)
    return list(records)


def prune(run, *, sparsity: float = 0.5, epochs: int = 3, lr: float | None = None, batch_size: int | None = None,
          for_xnnpack: bool = False, fine_tune_optimizer: str = DEFAULT_FINE_TUNE_OPTIMIZER,
          tensorboard: bool | None = None, wait: bool = True, verbose: int = 1) -> PruneResult:
    """Magnitude-prune a run's model to ``sparsity`` while fine-tuning ``epochs``; returns the pruned model.

    Writes ``RUN/exports/pruned.keras`` (quantize it with ``quantize(run, model="exports/pruned.keras")``),
    ``pruned_float32.tflite`` and ``pruning_report.json``. ``for_xnnpack`` prunes only the 1x1
    convolutions XNNPACK's sparse inference accelerates and measures the sparse model's speed.
    ``fine_tune_optimizer`` and ``lr`` fine-tune as in :func:`quantize` (recorded in the report and
    the sidecars).
    The fine-tuning logs to ``RUN/tensorboard/prune`` unless ``tensorboard`` is False (None: as
    the run was trained). ``wait``: see *One writer per run* above.

    Example::

        >>> result = edgecls.prune("runs/flowers", sparsity=0.5, epochs=2)  # doctest: +SKIP
        >>> result.path.name, round(result.report["overall_sparsity"], 2)  # doctest: +SKIP
        ('pruned.keras', 0.49)
    """
    from edgecls.compression.pruning import prune_run

    with _writing(run, wait=wait):
        report = prune_run(run, target=sparsity, epochs=epochs, lr=lr, batch_size=batch_size,
                           for_xnnpack=for_xnnpack, optimizer=fine_tune_optimizer, tensorboard=tensorboard,
                           verbose=verbose)
        _refresh_report(run)
    exports = Path(run) / "exports"
    latency = report.get("latency_ms") or {}
    tflite_notes = (f"dense {latency['dense_float32']:.2f} ms → sparse {latency['pruned_sparse_float32']:.2f} ms"
                    if latency else "")
    records = [_record_on_disk(exports / "pruned.keras", f"{report['overall_sparsity']:.1%} zero weights"),
               _record_on_disk(exports / "pruned_float32.tflite", tflite_notes)]
    return PruneResult(exports / "pruned.keras", report, records)


def _record_on_disk(path: Path, notes: str = "") -> ExportRecord:
    """An ExportRecord read back from a written model and its sidecar (accuracy measured at export)."""
    from edgecls.sidecar import file_sizes, read_sidecar

    sidecar = read_sidecar(path) or {}
    accuracy = sidecar.get("accuracy") or {}
    return ExportRecord(sidecar.get("variant") or path.stem, path, file_sizes(path), accuracy.get("top1"),
                        accuracy.get("top5"), notes)


def optimize(run, *, max_drop: float = 0.5, objective: str = "latency", runtime: str = "tflite",
             time_budget: float | str | None = None, threads: int = 1, resume: bool = False, model=None,
             fine_tune_optimizer: str = DEFAULT_FINE_TUNE_OPTIMIZER, device: str | None = None,
             device_python: str = "python3", ssh_config=None, wait: bool = True, verbose: int = 1) -> OptimizeResult:
    """Search the run's variants (int8, QAT, pruning...) for the fastest (or smallest) within an accuracy budget.

    ``max_drop`` is the largest top-1 loss allowed against the float model, in percentage points,
    judged on the validation split (the test split is only reported). ``objective`` is
    ``"latency"`` or ``"size"``, ``runtime`` ``"tflite"`` or ``"onnx"``; ``time_budget`` caps the
    search (seconds, or "90s", "30m", "1h"); ``resume`` continues an interrupted search. Returns
    the search's ``OptimizeResult``: the leaderboard and the chosen candidate, copied to
    ``RUN/exports/best.tflite`` (or ``best.onnx``). Nothing within budget is not an error:
    ``within_budget`` is then False and ``chosen`` None. ``fine_tune_optimizer`` is the QAT and
    pruning candidates' (as in :func:`quantize`). ``device``: time every candidate on this device
    (``ssh://[user@]host[:port]`` or an ssh alias; see :func:`check_device`) instead of here,
    with ``device_python`` there and ``ssh_config`` (``ssh -F``) here; accuracy is measured
    here on the same bytes, and the leaderboard and ``best.json`` say where the latencies were
    taken. A device lost mid-search raises :class:`edgecls.errors.DeviceError` once the leaderboard so far is
    written; ``resume=True`` goes on. ``wait``: see *One writer per run* above.

    Example::

        >>> result = edgecls.optimize("runs/flowers", max_drop=0.5, time_budget="30m")  # doctest: +SKIP
        >>> result.best_path, result.chosen["variant"]  # doctest: +SKIP
        (PosixPath('runs/flowers/exports/best.tflite'), 'int8')
    """
    from edgecls.searching.variant_search import optimize_run

    with _writing(run, wait=wait):
        result = optimize_run(run, max_drop=max_drop, objective=objective, runtime=runtime, time_budget=time_budget,
                              threads=threads, resume=resume, model=model, fine_tune_optimizer=fine_tune_optimizer,
                              device=device, device_python=device_python, ssh_config=ssh_config, verbose=verbose)
        _refresh_report(run)
    return result


def search(data, out, *, max_latency_ms: float | None = None, max_size_kb: float | None = None, device=None,
           threads: int = 1, as_fast_as=None, time_budget=None, space=None, storage: str | None = None, join: str | None = None,
           resume: bool = False, also_latency_ms=(), device_python: str = "python3", ssh_config=None,
           verbose: int = 1) -> SearchResult | SearchWorkerResult:
    """The most accurate model from ``data`` that runs within ``max_latency_ms`` (and fits ``max_size_kb``) on the target.

    Searches architecture × width multiplier × input size (the registry's, or ``space``: a YAML
    file that narrows or widens it). Every configuration is first built untrained (BatchNorm
    statistics from training images), converted to int8 and float32 TFLite and timed where it
    will run (here, or on ``device``: ``ssh://[user@]host[:port]`` or an ssh alias), and those that
    cannot meet the limits are dropped (``OUT/feasibility.json``). The rest are trained as an
    Optuna study on the validation split, each trial an ordinary run folder in ``OUT/trials/``,
    with a Hyperband pruner over epochs; ``time_budget`` (seconds, or "30m", "2h") stops training
    within one epoch of it. The best trials by validation go through :func:`optimize` on the same
    target, and the choice is the highest validation top-1 among their variants that meet every
    limit, copied to ``OUT/exports/best.tflite`` with ``best.json`` saying why; the test split is
    reported, never used. ``OUT/search.json`` holds every trial and candidate, ``OUT/pareto.png``
    the front, ``OUT/report.html`` all of it on one page, and ``by_latency_limit`` the best under half the limit, the limit and each of
    ``also_latency_ms`` (for a limit no finalist's variant meets, the best trial by validation whose untrained latency
    meets it is compressed too). The study lives in ``OUT/study.db`` (``storage``: another database URL);
    ``resume=True`` continues an interrupted search, training an interrupted trial again; the budget is the whole
    search's, less what the earlier sessions recorded in ``search.json`` as spent of it (a session killed
    mid-training recorded none of its training).

    Several machines: start the search with ``storage="postgresql://user@host/db"``, and on each
    other machine call ``search(data, out, join=URL)`` (its own copy of the data, its own ``out``):
    it trains trials of that study until the study's time budget ends, and returns a
    :class:`SearchWorkerResult`; a worker that dies mid-trial has its
    trial trained again by another. The search that started the study waits for the workers'
    trials and chooses among every trial whose run folder it can read (a shared ``out`` disk).
    ``as_fast_as``: a model file (the one you have) whose latency on the target is the limit, or
    part of it beside ``max_latency_ms``: timed before feasibility, and again in one interleaved loop
    with every finalist variant, so the choice is "at least as fast", measured side by side.
    Nothing meeting the limits is not an error: ``within_limits`` is then False and ``closest``
    names what comes nearest (the command exits with 3).

    Example::

        >>> result = edgecls.search("data/flowers", "runs/search", max_latency_ms=5, max_size_kb=1024,
        ...                         time_budget="2h")  # doctest: +SKIP
        >>> result.chosen["config"]["key"], result.best_path  # doctest: +SKIP
        ('mobilenet_v3_small-a0.75-128px', PosixPath('runs/search/exports/best.tflite'))
    """
    if join is not None:
        from edgecls.architecture_search.workers import join_search

        if storage is not None:
            raise EdgeclsError("give --storage to start a study, or --join to work on one, not both")
        return join_search(data, out, join, time_budget=time_budget, verbose=verbose)
    from edgecls.architecture_search.stages import run_search

    result = run_search(data, out, max_latency_ms=max_latency_ms, max_size_kb=max_size_kb, device=device,
                        threads=threads, as_fast_as=as_fast_as, time_budget=time_budget, space=None if space is None else os.fspath(space),
                        storage=storage, resume=resume, also_latency_ms=tuple(also_latency_ms),
                        device_python=device_python, ssh_config=ssh_config, verbose=verbose)
    try:  # a view of the files written: a failure to draw it is a note, as for a run's report
        from edgecls.html_report.search_page import build_search_report

        build_search_report(result.out_dir)
    except (EdgeclsError, OSError) as err:
        from edgecls.errors import first_line

        print(f"note: {Path(result.out_dir) / 'report.html'} not written: {first_line(err)}", file=sys.stderr)
    return result


def predict(model, images, *, top_k: int = 5, threads: int = 1) -> Records:
    """Classify image files and folders; returns one record per image, as ``edgecls predict --json`` prints.

    ``model`` is a .tflite, .onnx or .keras file with its sidecar, or a list of them (an ensemble:
    the mean of their probabilities; members may differ in format and input size). ``images`` is
    a file or folder, or a list of them (folders are searched recursively). Each record is
    ``{"file": ..., "top_k": [{"index": i, "label": ..., "score": p}, ...]}``, best first.
    Files that are not usable images are left out and listed in ``records.skipped``.

    Example::

        >>> records = edgecls.predict("runs/flowers/exports/int8.tflite", "photos/", top_k=3)  # doctest: +SKIP
        >>> records[0]["top_k"][0]  # doctest: +SKIP
        {'index': 2, 'label': 'daisy', 'score': 0.91}
    """
    from edgecls.deploy.inputs import skipped_note
    from edgecls.deploy.prediction import predict_ensemble, predict_files

    models = _paths(model)
    if not models:
        raise EdgeclsError("give a model file (.tflite, .onnx or .keras) to predict with")
    notes = []
    if len(models) > 1:
        result = predict_ensemble(models, _paths(images), top_k=top_k, threads=threads)
        notes.append(f"note: ensemble of {len(models)} models ({result.runtime}): mean of their probabilities")
    else:
        result = predict_files(models, _paths(images), top_k=top_k, threads=threads)[0]
    note = skipped_note(result.bad)
    if note:
        notes.append(note)
    return Records(result.records, notes=notes, skipped=result.bad)


def bench(models=(), *, data=None, runtime: str = "all", threads: int = 1, runs: int = 50, rounds: int = 5,
          warmup: int = 10, e2e_images: int = 50, reference=None, imports=(), json_out=None, csv_out=None,
          png_out=None, parity: bool | None = None, parity_table: bool = False, verbose: int = 1, device=None,
          device_python: str = "python3", device_images: int = 500, ssh_config=None,
          device_timeout: float = 1800) -> Records:
    """Benchmark models: latency (p50/p90/p99 over rounds), load time, memory, size, top-1/top-5 and agreement.

    ``models`` are model files and/or run folders (model.keras + exports/); each runs in every
    ``runtime`` that can run it (``"tflite"``, ``"onnx"``, ``"keras"`` or ``"all"``). ``data``
    (class folders, or a dataset with a test/ folder) is what accuracy is measured on; without it
    each model is timed on synthetic input of its own shape and its rows say ``"accuracy_measured":
    false`` (``accuracy`` None, no end-to-end timing).
    ``imports`` adds device rows written by ``pi_infer.py --bench``. Returns one JSON-ready
    record per (model, runtime) — exactly the records of the bench JSON file — and writes
    ``json_out``, ``csv_out`` and ``png_out`` (default: beside the JSON or CSV) when given.
    Every record's ``where`` says where it was measured: ``on`` (``host`` or the device), the CPU
    model and its SIMD flags. ``parity_table`` (``--parity``) compares every two runtimes that ran
    one model on the images (Keras, LiteRT, ONNX Runtime, MediaPipe Tasks on each .tflite when a Python
    with MediaPipe is at hand, ``$EDGECLS_MEDIAPIPE_PYTHON``; with ``device``, the device's runtime too):
    top-1 agreement, mean and max |Δ probability| and each one's top-1, as each record's ``parity``
    list (``edgecls.benchmarking.parity``).

    With ``device`` (``ssh://[user@]host[:port]`` or an ssh alias) the .tflite models are timed
    on that device instead, through the system's ssh (``ssh_config``: a config file for ``ssh -F``;
    ``device_python``: the Python there, default ``python3``): each model and ``pi_infer.py`` are
    copied once into ``~/.cache/edgecls/device`` there (named by content hash), timed interleaved,
    and with ``data`` up to ``device_images`` test images are copied once and top-1 is measured
    there. A remote command running longer than ``device_timeout`` seconds is killed there. With
    ``device``, ``data`` and ``parity_table`` the models are benched on the host as well, and the
    device's answers (its ai-edge-litert or tflite-runtime) join the parity table beside the host's.

    Example::

        >>> records = edgecls.bench(["runs/flowers/exports/int8.tflite"], data="data/flowers/test",
        ...                         runtime="tflite", threads=1)  # doctest: +SKIP
        >>> records[0]["latency_ms"]["p50"], records[0]["accuracy"]  # doctest: +SKIP
        (0.41, 0.82)
        >>> pi = edgecls.bench(["runs/flowers"], data="data/flowers/test", device="ssh://pi@raspberrypi.local",
        ...                    threads=4)  # doctest: +SKIP
        >>> pi[0]["where"]["cpu"], pi[0]["latency_ms"]["p50"]  # doctest: +SKIP
        ('Cortex-A72', 4.9)
    """
    from edgecls.benchmarking.bench_files import write_report

    targets = _paths(models)
    if device is not None:
        from edgecls.benchmarking.device_bench import bench_on_device
        from edgecls.benchmarking.device_rows import read_device_records

        if not targets:
            raise EdgeclsError("give a MODEL (a .tflite file or a run folder) to benchmark on the device")
        if runtime not in ("all", "tflite"):
            raise EdgeclsError(f"--device runs .tflite models (pi_infer.py), not --runtime {runtime}")
        with_answers = parity_table and data is not None
        result = bench_on_device(targets, device=device, data=data, threads=threads, runs=runs, rounds=rounds,
                                 warmup=warmup, e2e_images=e2e_images, device_images=device_images,
                                 python=device_python, ssh_config=ssh_config, timeout=device_timeout,
                                 answers=with_answers)
        if with_answers:  # the device's answers beside the host's (and MediaPipe's) on the same images
            from edgecls.benchmarking.harness import bench as run_bench

            device_notes = result.notes
            result = run_bench(targets, data=data, runtime=runtime, threads=threads, runs=runs, rounds=rounds,
                               warmup=warmup, e2e_images=e2e_images, reference=reference, imports=_paths(imports),
                               progress=bool(verbose) and sys.stderr.isatty(), parity=parity, parity_table=True,
                               device_rows=list(result))
            result.notes[:0] = device_notes
        else:
            result.extend(record for path in _paths(imports) for record in read_device_records(path))
    else:
        from edgecls.benchmarking.harness import bench as run_bench

        result = run_bench(targets, data=data, runtime=runtime, threads=threads, runs=runs, rounds=rounds,
                           warmup=warmup, e2e_images=e2e_images, reference=reference, imports=_paths(imports),
                           progress=bool(verbose) and sys.stderr.isatty(), parity=parity, parity_table=parity_table)
    if png_out is None and (json_out or csv_out):
        png_out = Path(json_out or csv_out).with_suffix(".png")
    result.files = write_report(list(result), json_path=json_out, csv_path=csv_out, png_path=png_out)
    _refresh_report(*targets)
    return result


def check_device(device, *, device_python: str = "python3", ssh_config=None) -> DeviceCheckResult:
    """What a device is and has: machine, CPU model and the features that decide kernels, cores, memory,
    Python and the installed runtimes, through the system's ssh (``edgecls device check``).

    ``device`` is ``ssh://[user@]host[:port]`` or a host alias of ``~/.ssh/config`` (``ssh_config``:
    another config file, as ``ssh -F``); ``device_python`` the Python to probe with. Nothing is
    installed there: ``missing`` holds one line per missing piece with the exact ``pip install``.
    An unknown host key, a refused login or an unreachable device is a one-line error.

    Example::

        >>> result = edgecls.check_device("ssh://pi@raspberrypi.local")  # doctest: +SKIP
        >>> result.machine, result.cpu, result.features["asimddp"], result.missing  # doctest: +SKIP
        ('aarch64', 'Cortex-A72', False, [])
    """
    from edgecls.devices.readiness import check_device as run_check

    return run_check(device, python=device_python, ssh_config=ssh_config)


def bundle(run, out, *, target: str = "pi", model=None, force: bool = False) -> BundleResult:
    """Assemble a folder for the device: model, sidecar, labels, pi_infer.py, requirements and a README.

    ``model`` defaults to ``RUN/exports/int8.tflite``; ``out`` is replaced only with ``force``.
    The folder is built under a temporary name and renamed, so it is never half-written.

    Example::

        >>> result = edgecls.bundle("runs/flowers", "pi_bundle", target="pi")  # doctest: +SKIP
        >>> sorted(result.files)[:2]  # doctest: +SKIP
        ['README.md', 'int8.json']
    """
    from edgecls.deploy.bundling import bundle as build_bundle

    check_writable_folder(Path(out).parent, what="the folder of --out")
    written = build_bundle(run, out=out, target=target, model=model, force=force)
    return BundleResult(Path(written), target, sorted(p.name for p in Path(written).iterdir()))


def gradcam(run_or_model, images, out, *, layer: str | None = None, wait: bool = True,
            verbose: int = 1) -> GradcamResult:
    """Grad-CAM: a PNG per image with the heatmap of what made the model choose its class.

    ``run_or_model`` is a run folder or a .keras file; ``images`` a file or folder or a list of
    them; ``layer`` the feature-map layer to explain (default: the last convolution's output).
    PNGs and ``gradcam.json`` go to ``out``. ``wait``: see *One writer per run* above.

    Example::

        >>> result = edgecls.gradcam("runs/flowers", ["photo.jpg"], "cams")  # doctest: +SKIP
        >>> result.records[0]["label"], result.records[0]["png"]  # doctest: +SKIP
        ('daisy', 'cams/photo_gradcam.png')
    """
    from edgecls.insight.grad_cam import gradcam as run_gradcam

    check_writable_folder(out, what="--out")
    with _writing(run_or_model, wait=wait):
        made = run_gradcam(run_or_model, _paths(images), out, layer=layer, verbose=verbose)
        _refresh_report(run_or_model)
    return GradcamResult(made.layer, list(made.records), [tuple(item) for item in made.bad], Path(made.out_dir))


def report(run, *, wait: bool = True) -> Path:
    """Write ``RUN/report.html``: one page with the run's metrics, plots, exports and benchmarks; returns its path.

    ``wait``: see *One writer per run* above.

    Example::

        >>> edgecls.report("runs/flowers")  # doctest: +SKIP
        PosixPath('runs/flowers/report.html')
    """
    from edgecls.html_report import build_report

    with _writing(run, wait=wait):
        return Path(build_report(Path(run)))


def list_models(img_size: int | None = None, *, details: bool = False, include_test_only: bool = True) -> list:
    """The registered architectures: their names, or with ``details`` one dict per architecture.

    A dict holds ``name``, ``img_size`` (``img_size`` or the native size), ``params``, ``macs``,
    ``imagenet`` (pretrained weights exist), ``alpha`` (``--alpha`` scales its widths) and ``description`` — what ``edgecls models --json``
    prints. Names are cheap; details build every model once.

    Example::

        >>> "tiny_cnn" in edgecls.list_models()
        True
    """
    from edgecls.models import list_models as registered_names

    if not details:
        return registered_names(include_test_only=include_test_only)
    from edgecls.models.modeling import describe_models

    rows = describe_models(img_size)
    if not include_test_only:
        names = set(registered_names(include_test_only=False))
        rows = [row for row in rows if row["name"] in names]
    return rows


def _paths(value) -> list:
    """One path or several, as a list (None: none)."""
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        return [value]
    return list(value)


def _refresh_report(*paths) -> None:
    """Rebuild ``report.html`` of each run folder among ``paths`` (a run, or a model inside one).

    The report is a view of files already written, so a failure to draw it is a note, not a failed
    command; until ``edgecls.report`` is installed there is no report to rebuild.
    """
    runs = []
    for path in paths:
        run = _run_folder_of(path)
        if run is not None and run not in runs:
            runs.append(run)
    if not runs:
        return
    try:
        from edgecls.html_report import build_report
    except ImportError as err:
        if err.name == "edgecls.html_report":  # absent (or not yet complete) in this installation
            return
        raise
    from edgecls.run_lock import RunBusyError

    for run in runs:
        try:
            with _writing(run, wait=False):  # held already by a command that wrote into it
                build_report(run)
        except RunBusyError:
            pass  # another command is writing into it and rebuilds the report when it is done
        except (EdgeclsError, OSError) as err:
            from edgecls.errors import first_line

            print(f"note: {run / 'report.html'} not updated: {first_line(err)}", file=sys.stderr)


@contextlib.contextmanager
def _writing(*paths, wait: bool = True):
    """Hold the write lock (edgecls.run_lock) of every run folder among ``paths`` for the ``with`` block.

    In sorted order, so two commands that lock the same runs never wait for each other. A path
    that is no run folder locks nothing: the command itself then says what is wrong with it.
    """
    from edgecls.run_lock import writing

    runs = sorted({run.resolve() for run in map(_run_folder_of, paths) if run is not None})
    with contextlib.ExitStack() as stack:
        for run in runs:
            stack.enter_context(writing(run, wait=wait))
        yield


def _run_folder_of(path) -> Path | None:
    path = Path(path)
    candidates = [path, path.parent]
    if path.parent.name == "exports":
        candidates.append(path.parent.parent)
    for candidate in candidates:
        if (candidate / "config.yaml").is_file():
            return candidate
    return None
