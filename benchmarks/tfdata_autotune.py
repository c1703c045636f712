"""What tf.data's autotuning costs edgecls' training pipeline: the wait when an iterator closes.

Keras opens a new iterator over the training data every epoch and over the validation data at
every evaluation, and closes the old one. With autotuning on, closing sometimes waits for the
autotuning thread's next wake-up, whose period doubles from 10 ms up to a minute: the longer an
iterator lived, the longer the wait can be. edgecls' pipeline now turns autotuning off and sets
its parallelism itself (``edgecls.training.pipeline.PARALLEL_CALLS``); this script measures both
settings of the same pipeline, interleaved, on random images:

- close wait: iterators live for a set time, taking a batch per simulated training step (a sleep,
  as the CPU is busy with the model then), and the close is timed;
- throughput: batches per second drawn flat out, for the same pipeline with and without
  autotuning, so turning it off is seen not to slow the pipeline down.

    python benchmarks/tfdata_autotune.py --out benchmarks/results/tfdata_autotune
    python benchmarks/tfdata_autotune.py --out benchmarks/results/tfdata_autotune --render-only  # the .md again
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine_record import machine  # noqa: E402

from edgecls.sidecar import tool_versions  # noqa: E402

# A close slower than this waited for the autotuning thread (an idle close takes a few ms).
WAITED_S = 0.05


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--lifetimes", type=float, nargs="+", default=[0.5, 1.0, 2.0, 4.0],
                        help="seconds each iterator lives before it is closed")
    parser.add_argument("--repeats", type=int, default=8, help="iterators per lifetime and setting")
    parser.add_argument("--step-seconds", type=float, default=0.05, help="simulated training step")
    parser.add_argument("--throughput-seconds", type=float, default=4.0)
    parser.add_argument("--throughput-rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--render-only", action="store_true", help="rewrite the .md from OUT's .json, measure nothing")
    return parser.parse_args(argv)


def pipelines(batch_size: int) -> dict:
    from edgecls.config import AugmentConfig
    from edgecls.tf import tf
    from edgecls.training.pipeline import make_dataset

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (8192, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(len(images)) % 10
    base = make_dataset(images, labels, 10, batch_size, training=True,
                        augment=AugmentConfig(flip=True, crop_pad=2), seed=0).repeat()
    on = tf.data.Options()
    on.autotune.enabled = True
    return {"autotune off (edgecls)": base, "autotune on (tf.data default)": base.with_options(on)}


def close_wait(dataset, lifetime: float, step: float) -> float:
    started = time.perf_counter()
    iterator = iter(dataset)
    while time.perf_counter() - started < lifetime:
        next(iterator)
        time.sleep(step)
    closing = time.perf_counter()
    del iterator
    return time.perf_counter() - closing


def throughput(dataset, seconds: float) -> float:
    iterator = iter(dataset)
    next(iterator)  # the first batch starts the threads
    started, count = time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        next(iterator)
        count += 1
    rate = count / (time.perf_counter() - started)
    del iterator
    return rate


def measure(args) -> dict:
    from edgecls.progress import progress_bar

    modes = pipelines(args.batch_size)
    waits = {name: {str(life): [] for life in args.lifetimes} for name in modes}
    rates = {name: [] for name in modes}
    total = len(args.lifetimes) * args.repeats * len(modes) + args.throughput_rounds * len(modes)
    with progress_bar("tf.data close waits and throughput", total) as advance:
        for life in args.lifetimes:
            for _ in range(args.repeats):
                for name, dataset in modes.items():  # interleaved: drifting load hits both alike
                    waits[name][str(life)].append(close_wait(dataset, life, args.step_seconds))
                    advance()
        for _ in range(args.throughput_rounds):
            for name, dataset in modes.items():
                rates[name].append(throughput(dataset, args.throughput_seconds))
                advance()
    rows = {}
    for name in modes:
        per_life = {}
        for life, values in waits[name].items():
            values = np.asarray(values)
            per_life[life] = {"waits_s": [round(float(v), 4) for v in values],
                              "waited_share": float(np.mean(values > WAITED_S)),
                              "mean_wait_s": float(values.mean()), "max_wait_s": float(values.max()),
                              "mean_wait_over_lifetime": float(values.mean() / float(life))}
        rows[name] = {"lifetimes": per_life, "batches_per_s": rates[name],
                      "median_batches_per_s": float(np.median(rates[name]))}
    return {"benchmark": "tfdata_autotune", "batch_size": args.batch_size, "step_seconds": args.step_seconds,
            "repeats": args.repeats, "waited_threshold_s": WAITED_S, "modes": rows,
            "machine": machine(), "versions": tool_versions(), "date": time.strftime("%Y-%m-%d")}


def markdown(result: dict) -> str:
    modes = result["modes"]
    names = list(modes)
    lifetimes = list(next(iter(modes.values()))["lifetimes"])
    lines = ["# tf.data autotuning and the wait when an iterator closes", "",
             f"Machine: {result['machine'].get('cpu')}; {result['date']}; TensorFlow "
             f"{result['versions'].get('tensorflow', '?')}. Written by `benchmarks/tfdata_autotune.py`.", "",
             f"edgecls' training pipeline (batch {result['batch_size']}, flip + 2-px crop) over random 32×32 "
             f"images. Each iterator lives for the time shown, taking a batch every {result['step_seconds']:g} s "
             f"(a simulated training step), then is closed; {result['repeats']} iterators per cell, the two "
             f"settings interleaved. \"Waited\": closes slower than {result['waited_threshold_s']:g} s.", "",
             "| iterator lifetime | " + " | ".join(f"{n}: waited / mean wait / max wait" for n in names) + " |",
             "|---:|" + "---:|" * len(names)]
    for life in lifetimes:
        cells = []
        for name in names:
            c = modes[name]["lifetimes"][life]
            cells.append(f"{c['waited_share']:.0%} / {c['mean_wait_s']:.3f} s / {c['max_wait_s']:.3f} s")
        lines.append(f"| {float(life):g} s | " + " | ".join(cells) + " |")
    lines += ["", "Throughput, batches per second drawn flat out (median of rounds, interleaved): "
              + "; ".join(f"{n}: {modes[n]['median_batches_per_s']:.1f}" for n in names) + ".", "",
              "Why it matters: Keras closes an iterator at the end of every epoch and of every validation pass, "
              "so with autotuning on, each of those can stall training for the wait above; before edgecls turned "
              "autotuning off, this made the rounds of the input-pipeline measurement in `benchmarks/cifar10.py` "
              "bimodal.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    from edgecls.fsutil import write_json, write_text

    args = parse_args(argv)
    if args.render_only:
        result = json.loads((args.out / "tfdata_autotune.json").read_text())
    else:
        result = measure(args)
        args.out.mkdir(parents=True, exist_ok=True)
        write_json(args.out / "tfdata_autotune.json", result)
    text = markdown(result)
    write_text(args.out / "tfdata_autotune.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
