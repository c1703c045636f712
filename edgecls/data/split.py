"""Deterministic stratified splits that do not depend on listing order or location."""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence

from edgecls.errors import DataError


def validate_fractions(fractions: Mapping[str, float]) -> dict[str, float]:
    """Return ``fractions`` as a dict, or raise DataError if they are not a valid split."""
    if not fractions:
        raise DataError("split fractions are empty: give at least one, e.g. train=1.0")
    checked = {}
    for name, value in fractions.items():
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise DataError(f"split fraction for {name!r} is not a number: {value!r}") from None
        if not math.isfinite(value) or value < 0:
            raise DataError(f"split fraction for {name!r} must be a non-negative number, got {value}")
        checked[name] = value
    total = sum(checked.values())
    if abs(total - 1.0) > 1e-6:
        shown = ", ".join(f"{name}={value:g}" for name, value in checked.items())
        raise DataError(f"split fractions must add up to 1, got {shown} (sum {total:g})")
    return checked


def stratified_split(
    relpaths: Sequence[str],
    labels: Sequence[int],
    fractions: Mapping[str, float],
    seed: int,
) -> dict[str, list[int]]:
    """Split item indices into named parts with the same class proportions in each.

    Within a class, items are ordered by a hash of (seed, relative path) and cut at the
    rounded cumulative fractions, so the result depends only on the paths, labels, seed
    and fractions: not on listing order nor on where the data lives. Every part with a
    non-zero fraction gets at least one item of each class that has at least as many
    items as there are such parts. Indices in each part are ascending.
    """
    fractions = validate_fractions(fractions)
    if len(relpaths) != len(labels):
        raise ValueError(f"got {len(relpaths)} paths but {len(labels)} labels")
    by_class: dict[int, list[int]] = defaultdict(list)
    for index, label in enumerate(labels):
        by_class[int(label)].append(index)

    parts: dict[str, list[int]] = {name: [] for name in fractions}
    for members in by_class.values():
        members.sort(key=lambda i: (_order_key(seed, relpaths[i]), relpaths[i], i))
        start = 0
        for name, count in zip(fractions, _part_sizes(len(members), list(fractions.values()))):
            parts[name].extend(members[start : start + count])
            start += count
    return {name: sorted(indices) for name, indices in parts.items()}


def _order_key(seed: int, relpath: str) -> bytes:
    return hashlib.sha256(f"{seed}\0{relpath}".encode("utf-8", "surrogateescape")).digest()


def _part_sizes(n: int, fractions: list[float]) -> list[int]:
    # Cutting at rounded cumulative positions makes the sizes add up to n exactly.
    cuts, cumulative = [], 0.0
    for fraction in fractions:
        cumulative += fraction
        cuts.append(min(n, math.floor(n * cumulative + 0.5)))
    cuts[-1] = n
    sizes = [b - a for a, b in zip([0] + cuts[:-1], cuts)]

    wanted = [i for i, f in enumerate(fractions) if f > 0]
    if n >= len(wanted):
        # Small classes: take from the biggest part so that no non-empty part misses a class.
        for i in wanted:
            if sizes[i] == 0:
                donor = max(wanted, key=lambda j: (sizes[j], -j))
                sizes[donor] -= 1
                sizes[i] += 1
    return sizes
