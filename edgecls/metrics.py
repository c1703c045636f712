"""Metrics on predicted probabilities: ensembles (the mean of the members' class probabilities).

Members must know the same classes. When they list them in another order (two runs on the same
folders always agree, a hand-written labels.txt may not), their columns are reordered to the first
member's order; different class sets are an error. Pure NumPy: ``edgecls predict`` combines
TFLite and ONNX members without TensorFlow.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgecls.errors import EdgeclsError

_SHOWN = 4  # labels named in a mismatch message before "…"


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
