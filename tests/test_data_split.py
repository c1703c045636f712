"""edgecls.data.split: deterministic, order-independent, stratified."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecls.data.split import stratified_split
from edgecls.errors import DataError

FRACTIONS = {"train": 0.7, "val": 0.2, "test": 0.1}


def dataset(per_class=(100, 100, 100)):
    relpaths, labels = [], []
    for label, count in enumerate(per_class):
        relpaths += [f"class{label}/img_{i}.jpg" for i in range(count)]
        labels += [label] * count
    return relpaths, labels


def as_paths(parts, relpaths):
    return {name: {relpaths[i] for i in indices} for name, indices in parts.items()}


def test_same_seed_same_split_whatever_the_input_order():
    relpaths, labels = dataset()
    first = as_paths(stratified_split(relpaths, labels, FRACTIONS, seed=3), relpaths)
    pairs = list(zip(relpaths, labels))
    random.Random(1).shuffle(pairs)
    shuffled_paths, shuffled_labels = map(list, zip(*pairs))
    second = as_paths(stratified_split(shuffled_paths, shuffled_labels, FRACTIONS, seed=3), shuffled_paths)
    assert first == second


def test_different_seed_different_split():
    relpaths, labels = dataset()
    assert stratified_split(relpaths, labels, FRACTIONS, 0) != stratified_split(relpaths, labels, FRACTIONS, 1)


def test_proportions_are_exact_per_class():
    relpaths, labels = dataset((100, 50, 200))
    parts = stratified_split(relpaths, labels, FRACTIONS, 0)
    for name, fraction in FRACTIONS.items():
        counts = Counter(labels[i] for i in parts[name])
        assert counts == {0: round(100 * fraction), 1: round(50 * fraction), 2: round(200 * fraction)}


def test_parts_are_a_partition_with_ascending_indices():
    relpaths, labels = dataset((17, 23, 5))
    parts = stratified_split(relpaths, labels, FRACTIONS, 0)
    everything = sorted(i for indices in parts.values() for i in indices)
    assert everything == list(range(len(relpaths)))
    assert all(indices == sorted(indices) for indices in parts.values())


def test_every_class_reaches_every_non_empty_split():
    # 3 items per class and 70/20/10 would round val or test to zero; each must get one.
    relpaths, labels = dataset((3, 4, 5, 30))
    parts = stratified_split(relpaths, labels, FRACTIONS, 0)
    for name in FRACTIONS:
        assert {labels[i] for i in parts[name]} == {0, 1, 2, 3}


def test_a_class_too_small_for_every_split_is_still_placed():
    relpaths, labels = dataset((2, 10))
    parts = stratified_split(relpaths, labels, FRACTIONS, 0)
    assert sum(1 for indices in parts.values() for i in indices if labels[i] == 0) == 2


def test_zero_fraction_split_is_empty():
    relpaths, labels = dataset((10, 10))
    parts = stratified_split(relpaths, labels, {"train": 0.8, "val": 0.0, "test": 0.2}, 0)
    assert parts["val"] == [] and len(parts["train"]) == 16 and len(parts["test"]) == 4


@pytest.mark.parametrize(
    "fractions",
    [{}, {"train": 0.7, "val": 0.2}, {"train": 1.2, "val": -0.2}, {"train": float("nan"), "val": 1.0},
     {"train": "lots"}],
)
def test_invalid_fractions_raise_data_error(fractions):
    relpaths, labels = dataset((4, 4))
    with pytest.raises(DataError):
        stratified_split(relpaths, labels, fractions, 0)


@settings(max_examples=60, deadline=None)
@given(
    labels=st.lists(st.integers(0, 4), min_size=1, max_size=60),
    seed=st.integers(0, 2**31),
    shuffle_seed=st.integers(0, 1000),
    weights=st.lists(st.integers(0, 10), min_size=1, max_size=4).filter(any),
)
def test_split_is_a_partition_independent_of_order(labels, seed, shuffle_seed, weights):
    fractions = {f"part{i}": w / sum(weights) for i, w in enumerate(weights)}
    relpaths = [f"c{label}/{i}.png" for i, label in enumerate(labels)]
    parts = stratified_split(relpaths, labels, fractions, seed)
    assert sorted(i for indices in parts.values() for i in indices) == list(range(len(labels)))

    order = list(range(len(labels)))
    random.Random(shuffle_seed).shuffle(order)
    shuffled = stratified_split([relpaths[i] for i in order], [labels[i] for i in order], fractions, seed)
    assert as_paths(shuffled, [relpaths[i] for i in order]) == as_paths(parts, relpaths)

    non_empty = [name for name, fraction in fractions.items() if fraction > 0]
    for label, count in Counter(labels).items():
        if count >= len(non_empty):
            assert all(any(labels[i] == label for i in parts[name]) for name in non_empty)
