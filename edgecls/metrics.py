"""Metrics on predicted class probabilities: accuracy (top-1, top-k), the confusion matrix, the
full classification report, and ensembles (the mean of the members' probabilities).

Every accuracy in edgecls (training's report, each export's check, bench, evaluate, optimize)
comes from here, so they agree on ties: a stable sort on the negated scores ranks equal scores
by class index, exactly as ``argmax`` does, so top-1 under the top-k rule equals the top-1 accuracy.

Ensemble members must know the same classes. When they list them in another order (two runs on
the same folders always agree, a hand-written labels.txt may not), their columns are reordered to
the first member's order; different class sets are an error.

Pure NumPy: ``edgecls predict`` combines TFLite and ONNX members without TensorFlow, and reports
need neither TensorFlow nor scikit-learn.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgecls.errors import EdgeclsError

_SHOWN = 4  # labels named in a mismatch message before "…"
TOP_K = 5  # the top-k reported beside top-1


# --------------------------------------------------------------------------- accuracy


def top1_accuracy(labels, probs) -> float:
    """Fraction of rows whose highest score (lowest index among equals) is the true class."""
    y, p = _labels_and_scores(labels, probs)
    return float(np.mean(p.argmax(axis=1) == y))


def top_k_accuracy(labels, probs, k: int = TOP_K) -> float:
    """Fraction of rows whose true class is among the ``k`` highest scores (ties: lower index first)."""
    if k < 1:
        raise ValueError("k must be at least 1")
    y, p = _labels_and_scores(labels, probs)
    order = np.argsort(-p, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(order == y[:, None], axis=1)))


def top_k_or_none(labels, probs, k: int = TOP_K) -> float | None:
    """:func:`top_k_accuracy`, or None with ``k`` classes or fewer (it would always be 1)."""
    return top_k_accuracy(labels, probs, k) if np.shape(probs)[-1] > k else None


def top1_agreement(probs_a, probs_b) -> float:
    """Fraction of rows where two models' highest scores name the same class (e.g. Keras vs ONNX)."""
    a, b = np.asarray(probs_a), np.asarray(probs_b)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"two (N, C) score arrays of one shape are needed, got {a.shape} and {b.shape}")
    return float(np.mean(a.argmax(axis=1) == b.argmax(axis=1)))


def confusion_matrix(labels, predicted, num_classes: int) -> np.ndarray:
    """Counts (C, C), rows the true class and columns the predicted one."""
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    pred = np.asarray(predicted, dtype=np.int64).reshape(-1)
    if y.shape != pred.shape:
        raise ValueError(f"{len(y)} labels for {len(pred)} predictions")
    for name, values in (("labels", y), ("predictions", pred)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name} hold class indices outside 0..{num_classes - 1}")
    return np.bincount(y * num_classes + pred, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def classification_metrics(y_true, probs, class_names: Sequence[str]) -> dict:
    """Top-1/top-5 accuracy, precision/recall/F1 and the confusion matrix, as JSON-ready types.

    ``y_true`` holds class indices (N,), ``probs`` the scores (N, C), one column per class name.
    The macro and weighted averages follow scikit-learn's default and cover the classes that
    occur in the labels or the predictions: a class with no samples that the model never
    predicts says nothing about the model, so it should not drag the averages towards zero.
    It still appears in ``per_class`` (all zeros, support 0) and in the confusion matrix.
    """
    names = check_class_names(class_names)
    y, p = check_inputs(y_true, probs, names, allow_empty=False)
    n, c = p.shape
    pred = p.argmax(axis=1)
    cm = confusion_matrix(y, pred, c)
    hits = np.diag(cm).astype(np.float64)
    support, predicted = cm.sum(axis=1), cm.sum(axis=0)
    precision = _ratio(hits, predicted)
    recall = _ratio(hits, support)
    f1 = _ratio(2 * hits, support + predicted)  # = 2PR/(P+R), and 0 where nothing was right
    present = (support + predicted) > 0
    return {
        "accuracy": float(hits.sum() / n),
        "top5_accuracy": top_k_or_none(y, p, TOP_K),
        "macro_precision": float(precision[present].mean()),
        "macro_recall": float(recall[present].mean()),
        "macro_f1": float(f1[present].mean()),
        "weighted_f1": float(np.dot(f1, support) / n),
        "num_samples": int(n),
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                   "support": int(support[i])}
            for i, name in enumerate(names)
        },
        "confusion_matrix": [[int(v) for v in row] for row in cm],
    }


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    numerator = np.asarray(numerator, dtype=np.float64)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def check_class_names(class_names: Sequence[str]) -> list[str]:
    """The names as strings; ValueError when there are none or two are the same."""
    names = [str(n) for n in class_names]
    if not names:
        raise ValueError("no class names")
    if len(set(names)) != len(names):
        # Per-class results are keyed by name; duplicates would silently merge two classes.
        raise ValueError("class names must be unique")
    return names


def check_inputs(y_true, probs, names: Sequence[str], *, allow_empty: bool) -> tuple[np.ndarray, np.ndarray]:
    """Labels (N,) as int64 and scores (N, C) as float64, checked against each other and ``names``."""
    y = np.asarray(y_true)
    p = np.asarray(probs, dtype=np.float64)
    c = len(names)
    if y.ndim != 1:
        raise ValueError(f"y_true must be one-dimensional, got shape {y.shape}")
    if y.size == 0:
        if not allow_empty:
            raise ValueError("no samples to evaluate")
        p = p.reshape(0, c)
    if p.ndim != 2 or p.shape != (len(y), c):
        raise ValueError(f"probs must have shape ({len(y)}, {c}), got {p.shape}")
    if y.size and y.dtype.kind not in "iu":
        # Labels read back from CSV/JSON can arrive as floats; accept them if they are whole.
        if y.dtype.kind != "f" or not np.all(y == np.round(y)):
            raise ValueError("y_true must hold integer class indices")
    y = y.astype(np.int64)
    if y.size and (y.min() < 0 or y.max() >= c):
        raise ValueError(f"y_true has class indices outside 0..{c - 1}")
    return y, p


def _labels_and_scores(labels, probs) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probs)
    if p.ndim != 2 or p.shape[1] == 0:
        raise ValueError(f"probs must have shape (N, C), got {p.shape}")
    return check_inputs(labels, p, range(p.shape[1]), allow_empty=False)


# --------------------------------------------------------------------------- ensembles


def label_orders(member_labels: Sequence[Sequence[str]], names: Sequence[str]) -> list[np.ndarray]:
    """For each member, the column order that puts its probabilities in the first member's order."""
    if not member_labels:
        raise EdgeclsError("an ensemble needs at least one model")
    reference = [str(label) for label in member_labels[0]]
    orders = []
    for labels, name in zip(member_labels, names):
        labels = [str(label) for label in labels]
        if set(labels) != set(reference) or len(labels) != len(reference):
            raise EdgeclsError(_mismatch(reference, names[0], labels, name))
        position = {label: i for i, label in enumerate(labels)}
        orders.append(np.array([position[label] for label in reference], dtype=np.int64))
    return orders


def _mismatch(reference, reference_name, labels, name) -> str:
    def listed(values):
        values = sorted(values)
        return ", ".join(values[:_SHOWN]) + (", …" if len(values) > _SHOWN else "")

    missing, extra = set(reference) - set(labels), set(labels) - set(reference)
    parts = ([f"lacks {listed(missing)}"] if missing else []) + ([f"adds {listed(extra)}"] if extra else [])
    if not parts:  # same set, repeated names
        parts = [f"lists {len(labels)} labels against {len(reference)}"]
    return f"models must share labels: {name} {' and '.join(parts)} compared with {reference_name}"


def mean_probs(member_probs: Sequence[np.ndarray], orders: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """Mean of the members' probabilities (N, C), each reordered by ``orders`` (None: aligned already)."""
    if not member_probs or (orders is not None and len(orders) != len(member_probs)):
        raise ValueError("one column order per member is needed")
    aligned = [np.asarray(p, dtype=np.float64) for p in member_probs]
    if orders is not None:
        aligned = [p[:, order] for p, order in zip(aligned, orders)]
    shapes = {a.shape for a in aligned}
    if len(shapes) != 1:
        raise ValueError(f"members predicted arrays of different shapes: {sorted(shapes)}")
    return np.mean(aligned, axis=0).astype(np.float32)


def common_rows(member_files: Sequence[Sequence[str]]) -> list[np.ndarray]:
    """Row indices, per member, of the files every member kept, in the first member's order.

    Members at different input sizes decode the files separately, so each skips its own bad files;
    only images all of them saw can be compared or averaged.
    """
    shared = set(member_files[0]).intersection(*map(set, member_files[1:]))
    order = [name for name in member_files[0] if name in shared]
    rows = []
    for files in member_files:
        where = {name: i for i, name in enumerate(files)}
        rows.append(np.array([where[name] for name in order], dtype=np.int64))
    return rows
