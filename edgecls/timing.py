"""The one interleaved timing loop: bench, prune and benchmarks/ time models with it.

Timing two models one after the other lets the machine's drift (a busy neighbour, a CPU
frequency change, thermal throttling) favour whichever ran in the quieter minute. Here every
round times each call in turn, so drift hits all of them alike, and the median of the round
medians ignores a round spoiled by a burst of noise. The timed section is the call alone:
nothing but two ``perf_counter_ns`` reads surrounds it.

Pure Python and NumPy, so it can time any runtime without pulling in TensorFlow.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import numpy as np


def percentiles_ms(samples_ns) -> dict:
    """p50/p90/p99/mean/min of nanosecond samples, in milliseconds (all None without samples)."""
    values = np.asarray(samples_ns, dtype=np.float64) / 1e6
    if values.size == 0:
        return {"p50": None, "p90": None, "p99": None, "mean": None, "min": None}
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "mean": float(values.mean()),
            "min": float(values.min())}


def spread_pct(medians_ms) -> float:
    """(max - min) / median of the round medians, in percent: how steady the machine was."""
    medians = np.asarray(medians_ms, dtype=np.float64)
    if medians.size == 0:
        return 0.0
    middle = float(np.median(medians))
    return float((medians.max() - medians.min()) / middle * 100) if middle > 0 else 0.0


def interleaved_latency(calls: Mapping[str, Callable[[], object]], *, rounds: int = 7, runs: int = 50,
                        warmup: int = 5, advance: Callable[[int], object] | None = None,
                        keep_samples: bool = False) -> dict[str, dict]:
    """Time every call ``rounds`` × ``runs`` times, interleaved round by round.

    Each call is first warmed up ``warmup`` times untimed (first calls allocate, JIT, fill caches).
    Then each round times every call ``runs`` times in a row, in the mapping's order. Returns, per
    name: ``median_ms`` (median of the round medians), ``round_medians_ms``, ``spread_pct`` (see
    :func:`spread_pct`), ``latency_ms`` (:func:`percentiles_ms` of all samples) and
    ``throughput_ips`` (calls per second at the mean latency); with ``keep_samples`` also
    ``samples_ns``, every timed call's nanoseconds in the order they ran.

    ``advance(steps)``, a progress callback, runs outside the timed calls: once per call after its
    warm-up (``warmup`` steps) and after each block of ``runs`` (``runs`` steps), so a bar of
    ``len(calls) * (warmup + rounds * runs)`` steps ends full.
    """
    if runs < 1 or rounds < 1 or warmup < 0:
        raise ValueError("runs and rounds must be at least 1, warmup at least 0")
    if not calls:
        raise ValueError("nothing to time")
    names = list(calls)
    for name in names:
        call = calls[name]
        for _ in range(warmup):
            call()
        if advance is not None and warmup:
            advance(warmup)
    clock = time.perf_counter_ns
    samples = {name: np.empty(rounds * runs, dtype=np.int64) for name in names}
    medians: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        start = r * runs
        for name in names:
            call, out = calls[name], samples[name]
            for i in range(start, start + runs):
                t0 = clock()
                call()
                out[i] = clock() - t0
            medians[name].append(float(np.median(out[start:start + runs])) / 1e6)
            if advance is not None:
                advance(runs)
    results = {}
    for name in names:
        mean_ns = float(samples[name].mean())
        results[name] = {
            "median_ms": float(np.median(medians[name])),
            "round_medians_ms": medians[name],
            "spread_pct": spread_pct(medians[name]),
            "latency_ms": percentiles_ms(samples[name]),
            "throughput_ips": 1e9 / mean_ns if mean_ns > 0 else float("inf"),
        }
        if keep_samples:
            results[name]["samples_ns"] = samples[name]
    return results
