"""``bench --parity``: do the runtimes a user may pick give the same answers for one model on the same images?

Every runtime that ran a model on the bench images answers with probabilities (in the data's
class order). Answers belong together when they come from one model: the Keras reference and
every export made from it (found as bench finds references), or one file in two runtimes (LiteRT
and MediaPipe on the same .tflite). For each pair of them on their common images: top-1
agreement, mean and max |Δ probability| (over every image and class) and each one's top-1.
A pair is recorded on the bench row of its second member (``record["parity"]``), so bench.json
stays one list of rows; :func:`pairs` collects them again for the table and the report.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np


@dataclass
class Answers:
    """What one runtime answered on the bench images: probabilities in the data's class order."""

    name: str  # the row's display name
    runtime: str
    model: str
    group: str  # the model they all come from: its Keras reference, else the file itself
    paths: list[str]
    probs: np.ndarray  # (images, classes)
    truth: np.ndarray  # class index per image
    owner: int  # the bench row the pair is recorded on

    def describe(self) -> dict:
        return {"name": self.name, "runtime": self.runtime, "model": self.model}


def compare(a: Answers, b: Answers) -> dict | None:
    """The parity fields of two answers on their common images; None when they share none."""
    where = {path: i for i, path in enumerate(b.paths)}
    common = [(i, where[path]) for i, path in enumerate(a.paths) if path in where]
    if not common:
        return None
    left, right = (np.asarray(side) for side in zip(*common))
    pa, pb = a.probs[left], b.probs[right]
    top_a, top_b = pa.argmax(axis=1), pb.argmax(axis=1)
    delta = np.abs(pa - pb)
    return {
        "a": a.describe(), "b": b.describe(), "images": len(common),
        "agreement": float(np.mean(top_a == top_b)),
        "mean_abs_dp": float(delta.mean()), "max_abs_dp": float(delta.max()),
        "top1_a": float(np.mean(top_a == a.truth[left])), "top1_b": float(np.mean(top_b == b.truth[right])),
    }


def add_parity(records: list[dict], answers: list[Answers]) -> None:
    """Set ``record["parity"]`` on every row: the pairs whose second member it owns ([] when none)."""
    for record in records:
        record["parity"] = []
    for a, b in combinations(answers, 2):
        if a.group == b.group:
            fields = compare(a, b)
            if fields is not None:
                records[b.owner]["parity"].append(fields)


def pairs(records) -> list[dict]:
    """Every parity pair recorded on ``records``, in table order."""
    return [pair for record in records for pair in (record.get("parity") or []) if isinstance(pair, dict)]


def table(records, title: str = "parity: the same model in two runtimes, on the same images"):
    """A rich Table of the pairs (None when there are none)."""
    from rich.table import Table

    found = pairs(records)
    if not found:
        return None
    grid = Table(title=title, title_justify="left")
    for name in ("a", "b"):
        grid.add_column(name, no_wrap=True)
    for name in ("images", "top-1 agree", "mean |Δp|", "max |Δp|", "top-1 a", "top-1 b"):
        grid.add_column(name, justify="right", no_wrap=True)
    for pair in found:
        grid.add_row(_side(pair["a"]), _side(pair["b"]), str(pair["images"]), f"{pair['agreement']:.4f}",
                     f"{pair['mean_abs_dp']:.2e}", f"{pair['max_abs_dp']:.2e}", f"{pair['top1_a']:.4f}",
                     f"{pair['top1_b']:.4f}")
    return grid


def _side(side: dict) -> str:
    return f"{side.get('name')} ({side.get('runtime')})"
