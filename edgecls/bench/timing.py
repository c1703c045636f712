"""Timing loops, their statistics, and the process' peak memory.

The timed section is the call alone: inputs are prepared before the loop, each call is timed with
``perf_counter_ns`` and nothing else (no allocation, no logging) happens between two clocks.
Repeating the loop in rounds shows how steady the machine was: the spread of round medians.
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

import numpy as np


def percentiles_ms(samples_ns) -> dict:
    """p50/p90/p99/mean/min of nanosecond samples, in milliseconds."""
    values = np.asarray(samples_ns, dtype=np.float64) / 1e6
    if values.size == 0:
        return {"p50": None, "p90": None, "p99": None, "mean": None, "min": None}
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "mean": float(values.mean()),
            "min": float(values.min())}


def time_calls(fn, arg, *, runs: int, rounds: int = 1, warmup: int = 5, advance=None) -> dict:
    """Call ``fn(arg)`` ``warmup`` times untimed, then ``rounds`` × ``runs`` times, each call timed.

    Returns ``{"latency_ms": {...}, "rounds": {...}, "throughput_ips": ...}``; ``advance(n)`` (a
    progress callback) is only called between rounds, outside the timed calls.
    """
    if runs < 1 or rounds < 1:
        raise ValueError("runs and rounds must be at least 1")
    for _ in range(warmup):
        fn(arg)
    if advance is not None:
        advance(warmup)
    clock = time.perf_counter_ns
    samples = np.empty(runs * rounds, dtype=np.int64)
    medians = []
    for r in range(rounds):
        start = r * runs
        for i in range(start, start + runs):
            t0 = clock()
            fn(arg)
            samples[i] = clock() - t0
        medians.append(float(np.median(samples[start:start + runs])) / 1e6)
        if advance is not None:
            advance(runs)
    return {
        "latency_ms": percentiles_ms(samples),
        "rounds": round_summary(medians, runs, warmup),
        "throughput_ips": float(1e9 / samples.mean()),
    }


def round_summary(medians_ms, runs_per_round: int, warmup: int) -> dict:
    medians = [float(m) for m in medians_ms]
    middle = float(np.median(medians))
    spread = (max(medians) - min(medians)) / middle * 100 if middle > 0 else 0.0
    return {"count": len(medians), "runs_per_round": int(runs_per_round), "warmup": int(warmup),
            "medians_ms": medians, "spread_pct": float(spread)}


def bare_invoke_times(model_path, *, threads: int = 1, runs: int = 100, warmup: int = 10,
                      image: np.ndarray | None = None) -> np.ndarray:
    """Nanoseconds of ``interpreter.invoke()`` alone, input set once: the floor bench is held to.

    Deliberately independent of the runtime layer (only the interpreter lookup is shared), so it
    measures what a hand-written loop on the same file gets.
    """
    from edgecls.deploy.litert import tflite_interpreter

    interpreter = tflite_interpreter(model_path=model_path, num_threads=threads)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    if image is None:
        image = np.random.default_rng(0).integers(0, 256, detail["shape"], dtype=np.uint8)
    interpreter.set_tensor(detail["index"], np.asarray(image, dtype=detail["dtype"]).reshape(detail["shape"]))
    invoke = interpreter.invoke
    for _ in range(warmup):
        invoke()
    clock = time.perf_counter_ns
    samples = np.empty(runs, dtype=np.int64)
    for i in range(runs):
        t0 = clock()
        invoke()
        samples[i] = clock() - t0
    return samples


def reset_peak_rss() -> bool:
    """Reset this process' peak resident set (Linux ≥ 4.0); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def current_rss_mb() -> float | None:
    return _status_mb("VmRSS")


def peak_rss_mb() -> float | None:
    """Peak resident memory since the last ``reset_peak_rss`` (else since the process started)."""
    peak = _status_mb("VmHWM")
    if peak is not None:
        return peak
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / (1024 * 1024) if sys.platform == "darwin" else maxrss / 1024


def _status_mb(key: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None
