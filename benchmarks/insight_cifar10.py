"""What do test-time augmentation and a two-model ensemble add on CIFAR-10?

Evaluates two trained runs on the full CIFAR-10 test split (10,000 images): each model alone, each
with TTA (fixed views: the flip and 2-pixel shifts with a reflected border), the ensemble of the two
(mean of probabilities), and the ensemble with TTA. All of it is one call of the library function
behind ``edgecls evaluate RUN_A RUN_B --data DATA --tta``, so these are the numbers that command
prints.

Train the two runs first (two seeds of the reference recipe, or two recipes), then, from the
repository root:

    python benchmarks/insight_cifar10.py --runs runs/c10_a runs/c10_b \\
        --data ../shared/datasets/cifar10.tar.gz --out benchmarks/results

Writes ``insight_cifar10.json``, ``insight_cifar10.md`` and ``insight_cifar10.png`` (accuracy side
by side) into ``--out``. A run on fewer than 10,000 test images is marked as not a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine_record import machine  # noqa: E402

import edgecls  # noqa: E402
from edgecls.insight.tta import DEFAULT_COUNT  # noqa: E402
from edgecls.run_folder import RunFolder  # noqa: E402
from edgecls.sidecar import tool_versions  # noqa: E402

FULL_TEST_SPLIT = 10_000
NAME = "insight_cifar10"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", type=Path, required=True, help="two (or more) CIFAR-10 run folders")
    parser.add_argument("--data", required=True, help="CIFAR-10: the archive or its folder (its test/ split is used)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--tta-count", type=int, default=DEFAULT_COUNT, help="views per image")
    parser.add_argument("--reports", type=Path, default=None,
                        help="keep edgecls evaluate's full reports here (default: a temporary folder)")
    args = parser.parse_args(argv)
    if len(args.runs) < 2:
        parser.error("--runs needs at least two run folders: the point is the ensemble")
    return args


def run_summary(run: Path) -> dict:
    """What the run is: architecture, size, recipe, its own test accuracy and training time."""
    from edgecls.config import load_run_config

    config = load_run_config(run)
    metrics = RunFolder(run).metrics
    trained = json.loads(metrics.read_text()) if metrics.is_file() else {}
    return {"run": str(run), "arch": config.model.arch, "img_size": config.data.img_size,
            "alpha": config.model.alpha, "epochs": config.train.epochs, "seed": config.train.seed,
            "accuracy_at_training": trained.get("accuracy"), "train_seconds": trained.get("train_seconds")}


def gains(rows: list[dict]) -> dict:
    members = [row for row in rows if row["kind"] == "member"]
    ensemble = next(row for row in rows if row["kind"] == "ensemble")
    best = max(members, key=lambda row: row["accuracy"])
    return {
        "tta_gain": {row["name"]: row["tta_gain"] for row in members},
        "best_single": best["name"],
        "ensemble_over_best_single": ensemble["accuracy"] - best["accuracy"],
        "ensemble_over_mean_single": ensemble["accuracy"] - sum(r["accuracy"] for r in members) / len(members),
        "ensemble_tta_over_best_single": ensemble["tta_accuracy"] - best["accuracy"],
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    from edgecls.insight.compare import plot_comparison

    load_before = os.getloadavg()
    started = time.time()
    with tempfile.TemporaryDirectory() as scratch:
        reports = args.reports or Path(scratch) / "reports"
        metrics = edgecls.evaluate(args.runs, args.data, reports, tta=args.tta_count).metrics
    seconds = time.time() - started
    rows = metrics["comparison"]
    full = metrics["num_samples"] >= FULL_TEST_SPLIT
    result = {
        "benchmark": NAME,
        "full_test_split": full,
        "data": str(args.data),
        "num_images": metrics["num_samples"],
        "skipped_files": metrics["skipped_files"],
        "tta": metrics["tta"],
        "runs": [run_summary(run) for run in args.runs],
        "rows": rows,
        "gains": gains(rows),
        "seconds": seconds,
        "load_average_before_after": [list(load_before), list(os.getloadavg())],
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine() | {"platform": platform.platform()},
        "versions": tool_versions(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    plot_comparison(rows, args.out / f"{NAME}.png", tta_count=args.tta_count,
                    title=f"CIFAR-10 test split ({metrics['num_samples']} images): single models, TTA, ensemble")
    (args.out / f"{NAME}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / f"{NAME}.md").write_text(markdown(result))
    print(markdown(result))
    return 0


def markdown(result: dict) -> str:
    count = result["tta"]["count"]
    machine = result["machine"]
    g = result["gains"]
    warning = "" if result["full_test_split"] else (
        f" (NOT the full test split: {result['num_images']} images; not a measurement)")
    lines = [
        f"# Test-time augmentation and ensembles on CIFAR-10{warning}",
        "",
        f"`python benchmarks/insight_cifar10.py --runs {' '.join(Path(r['run']).name for r in result['runs'])} "
        f"--data {Path(result['data']).name} --tta-count {count}`: {result['num_images']} test images "
        f"({result['skipped_files']} skipped), {result['seconds']:.0f} s in all.",
        "",
        f"Machine: {machine.get('cpu')} ({machine['machine']}, {machine['cpus']} CPUs), Python {machine['python']}, "
        f"TensorFlow {result['versions'].get('tensorflow', '?')}; load average before/after "
        f"{result['load_average_before_after'][0][0]:.2f}/{result['load_average_before_after'][1][0]:.2f}.",
        "",
        "| run | architecture | size | epochs | seed |",
        "|---|---|---:|---:|---:|",
    ]
    for run in result["runs"]:
        lines.append(f"| {Path(run['run']).name} | {run['arch']} (alpha {run['alpha']}) | {run['img_size']} | "
                     f"{run['epochs']} | {run['seed']} |")
    lines += ["", f"| prediction | top-1 | top-1 with TTA×{count} | TTA gain |", "|---|---:|---:|---:|"]
    for row in result["rows"]:
        lines.append(f"| {row['name']} | {row['accuracy']:.4f} | {row['tta_accuracy']:.4f} | "
                     f"{100 * row['tta_gain']:+.2f} pt |")
    views = next(iter(result["tta"]["views"].values()))
    lines += [
        "",
        f"The ensemble adds {100 * g['ensemble_over_best_single']:+.2f} pt over the better single model "
        f"({g['best_single']}) and {100 * g['ensemble_over_mean_single']:+.2f} pt over their mean; the ensemble "
        f"with TTA adds {100 * g['ensemble_tta_over_best_single']:+.2f} pt over the better single model. TTA costs "
        f"{count}× the inference time, the ensemble {len(result['runs'])}×.",
        "",
        f"TTA views (fixed, in this order): {', '.join(views)}. ![accuracy side by side]({NAME}.png)",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
