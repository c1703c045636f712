"""bench's timing fields, the bare-invoke floor, and the process' peak memory.

The loop itself is :func:`edgecls.timing.interleaved_latency`, shared with prune and benchmarks/;
here its result becomes the fields of a bench record. Repeating the loop in rounds shows how
steady the machine was: the spread of round medians.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

import numpy as np

from edgecls.timing import interleaved_latency


def latency_fields(stats: dict, *, runs: int, warmup: int) -> dict:
    """A bench record's ``latency_ms``, ``rounds`` and ``throughput_ips`` from one call's timing stats."""
    medians = [float(m) for m in stats["round_medians_ms"]]
    return {
        "latency_ms": stats["latency_ms"],
        "rounds": {"count": len(medians), "runs_per_round": int(runs), "warmup": int(warmup),
                   "medians_ms": medians, "spread_pct": float(stats["spread_pct"])},
        "throughput_ips": float(stats["throughput_ips"]),
    }


def bare_invoke_times(model_path, *, threads: int = 1, runs: int = 100, warmup: int = 10,
                      image: np.ndarray | None = None) -> np.ndarray:
    """Nanoseconds of ``interpreter.invoke()`` alone, input set once: the floor bench is held to.

    Deliberately independent of the runtime layer (only the interpreter lookup is shared), so it
    measures what a hand-written loop on the same file gets.
    """
    from edgecls.deploy.litert import ready_invoke

    invoke = ready_invoke(model_path, threads=threads, image=image)
    return interleaved_latency({"invoke": invoke}, rounds=1, runs=runs, warmup=warmup,
                               keep_samples=True)["invoke"]["samples_ns"]


def reset_peak_rss() -> bool:
    """Reset this process' peak resident set (Linux ≥ 4.0); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def current_rss_mb() -> float | None:
    """This process' resident memory now, in MB (None where /proc is missing)."""
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
