"""``edgecls evaluate``: one model or several as an ensemble, optionally with test-time augmentation.

Several models make an ensemble (the mean of their probabilities); the reports describe the final
prediction, and every model's accuracy with and without TTA is kept beside it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from edgecls.config import RunConfig
from edgecls.errors import DataError, EdgeclsError
from edgecls.fsutil import write_json
from edgecls.run_folder import RunFolder
from edgecls.training.evaluation import evaluate_arrays


def evaluate(runs_or_models, data: str | None = None, out: str | None = None, *, tta: int = 0,
             verbose: int = 1) -> dict:
    """``edgecls evaluate``: run folders or .keras files, on ``data`` or on the first run's test split.

    Several models make an ensemble (mean of probabilities); ``tta`` > 0 averages that many fixed
    views per image (``edgecls.insight.tta``). Reports go to ``out`` (default: ``eval/`` beside the
    model, ``eval_ensemble/`` beside the first one for an ensemble); returns the metrics, which
    hold every model's accuracy with and without TTA under ``comparison``.
    """
    from edgecls.data.decode import decode_split
    from edgecls.insight.compare import accuracy_row, plot_comparison
    from edgecls.insight.members import input_size, predict_members
    from edgecls.insight.sources import load_model_source
    from edgecls.metrics import common_rows, label_orders, mean_probs
    from edgecls.training.data_prep import cache_root

    targets = [runs_or_models] if isinstance(runs_or_models, (str, os.PathLike)) else list(runs_or_models)
    if not targets:
        raise EdgeclsError("give at least one run folder or .keras file to evaluate")
    models, sources = zip(*(load_model_source(target) for target in targets))
    orders = label_orders([s.labels for s in sources], [s.name for s in sources])
    classes = sources[0].labels
    config = sources[0].config or RunConfig()
    if data is None and sources[0].config is None:
        raise EdgeclsError(f"give --data DIR: {sources[0].model_path} has no run folder with a config.yaml "
                           "naming its data")
    own_split = data is None
    data, paths, labels = _test_files(config, data, classes)
    if own_split and len(sources) > 1:
        _note_other_splits(sources, paths, classes, verbose)

    # Each input size is decoded once (and cached); members then read the files all sizes kept.
    sizes = sorted({input_size(model) for model in models})
    splits = {size: decode_split(paths, labels, size, cache_root=cache_root(config), desc="decoding test images",
                                 progress=bool(verbose)) for size in sizes}
    rows = dict(zip(sizes, common_rows([splits[size].paths for size in sizes])))
    first = splits[sizes[0]]
    kept_paths = [first.paths[i] for i in rows[sizes[0]]]
    y = first.labels[rows[sizes[0]]]
    images = [_rows_of(splits[input_size(model)].images, rows[input_size(model)]) for model in models]

    members = predict_members(models, sources, images, orders, tta_count=tta, verbose=verbose)
    ensemble = len(members) > 1
    plain = mean_probs([m.plain for m in members])
    averaged = mean_probs([m.tta for m in members]) if tta else None
    comparison = [accuracy_row(m.source.name, "member", y, classes, m.plain, m.tta) for m in members]
    if ensemble:
        comparison.append(accuracy_row(f"ensemble (mean of {len(members)})", "ensemble", y, classes, plain, averaged))

    what = f"ensemble of {len(members)}" if ensemble else sources[0].model_path.name
    what += f" + TTA×{tta}" if tta else ""
    beside = RunFolder(sources[0].model_path.parent)
    out_dir = Path(out) if out else (beside.eval_ensemble if ensemble else beside.eval)
    report = RunFolder(out_dir)
    # The largest decoding makes the most legible gallery of mistakes.
    gallery = _rows_of(splits[sizes[-1]].images, rows[sizes[-1]])
    metrics = evaluate_arrays(None, gallery, y, kept_paths, classes, out_dir, title=f"{what} on {data}",
                              probs=averaged if tta else plain)
    metrics["prediction"] = what
    if tta:
        metrics["accuracy_without_tta"] = comparison[-1]["accuracy"]
        metrics["tta"] = {"count": tta, "views": {m.source.name: [v.name for v in m.views] for m in members}}
    if ensemble or tta:
        metrics["comparison"] = comparison
        plot_comparison(comparison, report.accuracy_comparison_png, tta_count=tta,
                        title=f"{what} on {data} ({len(y)} images)")
    metrics["skipped_files"] = len(paths) - len(kept_paths)
    if ensemble:
        metrics["models"] = [str(s.model_path) for s in sources]
    else:
        metrics["model"] = str(sources[0].model_path)
    metrics["data"] = str(data)
    metrics["report_dir"] = str(out_dir)
    write_json(report.metrics, metrics)
    return metrics


def _test_files(config: RunConfig, data, classes) -> tuple[str, list, list[int]]:
    """(data, test files, their label indices in ``classes``): ``data`` whole, or the run's test split."""
    from edgecls.data.layout import find_dataset
    from edgecls.training.data_prep import cache_root

    if data is None:
        d = config.data
        data = d.path
        fractions = {"train": 1.0 - d.val_fraction - d.test_fraction, "val": d.val_fraction, "test": d.test_fraction}
    else:
        fractions = {"train": 0.0, "val": 0.0, "test": 1.0}  # a plain class-folder tree is all test data
    files = find_dataset(data, fractions=fractions, seed=config.data.seed, cache_root=cache_root(config))
    unknown = [c for c in files.classes if c not in classes]
    if unknown:
        raise DataError(f"class folder(s) {', '.join(unknown)} in {data} are not classes of this model "
                        f"({', '.join(classes)})")
    paths, local_labels = files.splits["test"]
    return data, paths, [classes.index(files.classes[i]) for i in local_labels]


def _note_other_splits(sources, test_paths, classes, verbose: int) -> None:
    # A member whose own test split differs from the reference's may have trained on these images.
    # Splits are compared by their files: with a test/ folder the split seed does not matter.
    reference = set(map(str, test_paths))
    others = []
    for source in sources[1:]:
        if source.config is None:
            continue
        try:
            _, paths, _ = _test_files(source.config, None, classes)
        except EdgeclsError:
            paths = []
        if set(map(str, paths)) != reference:
            others.append(source.name)
    if others and verbose:
        print(f"note: {', '.join(others)} had another test split than {sources[0].name} (other data or split); "
              f"they may have trained on some of these test images", file=sys.stderr)


def _rows_of(images, rows: np.ndarray):
    # Almost always every row: the memory map is then passed on as it is, not copied into memory.
    if len(rows) == len(images) and np.array_equal(rows, np.arange(len(images))):
        return images
    return images[rows]
