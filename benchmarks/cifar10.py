"""The CIFAR-10 result: train a shipped recipe, make the int8 TFLite model, benchmark it.

For each recipe (default: ``cifar10_whitened_cnn``, the fast recipe; ``cifar10_resnet9`` is the
older reference) this script
  1. decodes the dataset once into a fresh cache inside OUT (timed: the one-off JPEG cost),
  2. times two training epochs of the resnet9 reference recipe, so the training budget can be
     scaled to this machine: 20 min where the reference runs at 50.9 s per epoch (the machine it
     took 17.0 min on), i.e. budget = 1200 s x reference epoch / 50.9 s (the faster of the two
     epochs: the first also traces the step),
  3. trains the recipe with edgecls (``train_seconds`` is the sum of the epoch times),
  4. quantizes to full-integer int8 TFLite (calibrated on training images) and measures its top-1
     on the 10,000 test images, and beside it the top-1 with test-time augmentation (8 views:
     flips and 2-pixel shifts) of the float and the int8 model,
  5. benchmarks the int8 model with ``edgecls bench`` (1 thread, batch 1, p50 of 5 rounds),
  6. times training steps fed by edgecls' real input pipeline (decoded JPEG cache -> gather ->
     augment) against the same augmented batches held in memory as tensors, interleaved in the
     same process, to show whether the input pipeline slows training down.

Run on a quiet machine, from the repository root (DIR is the extracted cifar10.tar.gz, the folder
holding train/ and test/ -- or the archive itself):

    python benchmarks/cifar10.py --data /tmp/cifar10 --out benchmarks/results/cifar10
    python benchmarks/cifar10.py --data /tmp/cifar10 --out benchmarks/results/cifar10 \\
        --recipe cifar10_resnet9 --recipe cifar10_mobilenet_v3_small
    python benchmarks/cifar10.py --data /tmp/cifar10-mini --out /tmp/c10 --epochs 1   # smoke run
    python benchmarks/cifar10.py --out benchmarks/results/cifar10 --render-only    # results.md from results.json

Each call adds or replaces its recipes' rows in OUT/results.json (and OUT/results.md); the
top-level keys describe the default recipe when it is among the rows.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine_record import machine  # noqa: E402

import edgecls  # noqa: E402
from edgecls.sidecar import tool_versions  # noqa: E402
from edgecls.timing import interleaved_latency  # noqa: E402

DEFAULT_RECIPE = "cifar10_whitened_cnn"
REFERENCE = "cifar10_resnet9"  # the recipe whose epoch time scales the training budget
BUDGET_SECONDS = 1200.0
BUDGET_REFERENCE_EPOCH_SECONDS = 50.9  # the reference's epoch where it trained in 17.0 min
TTA_VIEWS = 8
# Targets set by issues, printed beside what was measured (int8 top-1 on the test images).
GOALS = {"cifar10_whitened_cnn": (0.92, "issue 15")}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="extracted CIFAR-10 (train/ and test/ folders) or its archive")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--recipe", action="append", help=f"shipped recipe or YAML file (default {DEFAULT_RECIPE})")
    parser.add_argument("--epochs", type=int, help="override the recipe's epochs (smoke runs only)")
    parser.add_argument("--pipeline-steps", type=int, default=10, help="timed steps per round and source")
    parser.add_argument("--pipeline-rounds", type=int, default=9)
    parser.add_argument("--reference-epochs", type=int, default=2,
                        help="epochs of the resnet9 reference timed for the budget (0: skip)")
    parser.add_argument("--pipeline-only", action="store_true",
                        help="only measure the input pipeline again, for recipes already in OUT/results.json")
    parser.add_argument("--render-only", action="store_true", help="rewrite OUT/results.md from OUT/results.json")
    args = parser.parse_args(argv)
    if args.data is None and not args.render_only:
        parser.error("--data is required (unless --render-only)")
    return args


def time_reference(args) -> dict | None:
    """Epoch times of the resnet9 reference recipe on this machine, now: the training budget."""
    from edgecls import config as cfg
    from edgecls.training.run_state import read_history

    if args.reference_epochs < 1:
        return None
    config = cfg.from_dict(cfg.load_yaml(REFERENCE), source=REFERENCE)
    config.data.path = str(args.data)
    config.data.cache_dir = str(args.out / "cache")
    # Two epochs squeeze the recipe's learning-rate schedule, which changes no step's cost.
    result = edgecls.train(out=args.out / "runs" / "reference_timing", config=config, force=True, epochs=args.reference_epochs)
    seconds = [float(row["epoch_seconds"]) for row in read_history(result.run_dir)]
    reference = min(seconds)
    return {
        "recipe": REFERENCE,
        "epoch_seconds": seconds,
        "reference_epoch_seconds": reference,
        "budget_seconds": round(BUDGET_SECONDS * reference / BUDGET_REFERENCE_EPOCH_SECONDS, 1),
        "rule": f"{BUDGET_SECONDS:.0f} s x the faster of {len(seconds)} reference epochs / "
                f"{BUDGET_REFERENCE_EPOCH_SECONDS} s",
    }


def run_recipe(recipe: str, args, budget: dict | None = None) -> dict:
    from edgecls import config as cfg
    from edgecls.training.data_prep import prepare_data

    config = cfg.from_dict(cfg.load_yaml(recipe), source=recipe)
    config.data.path = str(args.data)
    if args.epochs:
        config.train.epochs = args.epochs
    name = Path(recipe).stem
    run_dir = args.out / "runs" / name
    config.data.cache_dir = str(args.out / "cache")

    started = time.perf_counter()
    data = prepare_data(config_with_size(config), None, verbose=1)
    decode_seconds = time.perf_counter() - started

    result = edgecls.train(out=run_dir, config=config, force=True)
    float_accuracy = float(result.metrics["accuracy"])
    int8 = edgecls.quantize(run_dir, int8=True)[0]
    row = edgecls.bench([int8.path], data=args.data, runtime="tflite", threads=1, runs=200, rounds=5,
                        parity=False)[0]
    tta = tta_accuracy(run_dir, int8.path, data)
    pipeline = measure_pipeline(config, args)
    within = None if budget is None else result.train_seconds <= budget["budget_seconds"]
    return {
        "recipe": name,
        "arch": config.model.arch,
        "alpha": config.model.alpha,
        "img_size": config.data.img_size,
        "epochs": result.epochs,
        "precision": config.train.precision,
        "batch_size": config.train.batch_size,
        "train_images": int(len(data.train.labels)),
        "val_images": int(len(data.val.labels)),
        "train_seconds": result.train_seconds,
        "decode_seconds": round(decode_seconds, 1),
        "float_accuracy": float_accuracy,
        "int8_accuracy": float(int8.accuracy),
        "tta": tta,
        "budget": budget,
        "within_budget": within,
        "int8_model": str(int8.path),
        "int8_latency_ms": float(row["latency_ms"]["p50"]),
        "int8_latency_p90_ms": float(row["latency_ms"]["p90"]),
        "int8_size_bytes": int(int8.path.stat().st_size),
        "int8_gzip_bytes": int(int8.size.get("gzip_bytes") or 0) or None,
        "test_images": int(row["images"]),
        "pipeline": pipeline,
        "command": f"python benchmarks/cifar10.py --data DIR --out OUT --recipe {recipe}",
    }


def tta_accuracy(run_dir: Path, int8_path: Path, data) -> dict:
    """Test top-1 of the float (Keras) and int8 (TFLite) models, plain and averaged over TTA views."""
    from edgecls.deploy.runtimes import open_model
    from edgecls.insight.tta import predict_views, tta_views
    from edgecls.metrics import top1_accuracy

    images, labels = data.test.images, data.test.labels
    views = tta_views(TTA_VIEWS, images.shape[1:3])
    result = {"views": [view.name for view in views]}
    for name, path in (("float", run_dir / "model.keras"), ("int8", int8_path)):
        runtime = open_model(path, threads=os.cpu_count() or 1, quiet=True)
        plain, averaged = predict_views(runtime.predict, images, views, batch_size=250)
        result[name] = {"accuracy": top1_accuracy(labels, plain), "tta_accuracy": top1_accuracy(labels, averaged)}
    return result


def remeasure_pipeline(recipe: str, args) -> dict:
    from edgecls.config import load_run_config

    name = Path(recipe).stem
    previous = json.loads((args.out / "results.json").read_text())
    row = next((r for r in previous["runs"] if r["recipe"] == name), None)
    if row is None:
        raise SystemExit(f"{name} is not in {args.out / 'results.json'}; run it in full first")
    row["pipeline"] = measure_pipeline(load_run_config(args.out / "runs" / name), args)
    return row


def config_with_size(config):
    from edgecls.models import get_model_spec

    config.data.img_size = int(config.data.img_size or get_model_spec(config.model.arch).default_size)
    return config


def measure_pipeline(config, args) -> dict:
    """Median training-step time: real input pipeline vs the same augmented batches in memory."""
    from edgecls.models import modeling
    from edgecls.tf import keras, tf
    from edgecls.training.data_prep import prepare_data
    from edgecls.training.distribute import precision_policy
    from edgecls.training.pipeline import PREFETCH_BATCHES, make_dataset, without_autotune
    from edgecls.training.schedules import make_optimizer

    data = prepare_data(config, None, verbose=0)
    batch = config.train.batch_size
    real = make_dataset(data.train.images, data.train.labels, data.num_classes, batch, training=True,
                        augment=config.augment, seed=1).repeat()
    held = list(real.take(args.pipeline_steps))
    xs = tf.concat([x for x, _ in held], 0)
    ys = tf.concat([y for _, y in held], 0)
    # drop_remainder, as the training pipeline does: the same static batch shape, so both sources
    # run the same traced training step; autotuning off in both (each fit() call closes an iterator,
    # which with autotuning on sometimes waits for its thread: benchmarks/tfdata_autotune.py).
    memory = without_autotune(tf.data.Dataset.from_tensor_slices((xs, ys)).batch(batch, drop_remainder=True)
                              .cache().repeat().prefetch(PREFETCH_BATCHES))

    with precision_policy(config.train.resolve_precision()):  # the recipe's step, at its precision
        model = modeling.build_model(config.model.arch, config.data.img_size, data.num_classes, weights="none",
                                     alpha=config.model.alpha, dropout=config.model.dropout)
        model.compile(optimizer=make_optimizer(config.train.optimizer, 1e-3, config.train.weight_decay),
                      loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.train.label_smoothing))
    steps = args.pipeline_steps
    # One call is one short epoch of ``steps`` training steps; the warm-up call traces the step.
    calls = {name: (lambda ds=ds: model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0))
             for name, ds in (("jpeg_pipeline", real), ("in_memory", memory))}
    timed = interleaved_latency(calls, rounds=args.pipeline_rounds, runs=1, warmup=1)
    rounds = {name: [ms / steps for ms in t["round_medians_ms"]] for name, t in timed.items()}
    step = {name: float(np.median(values)) for name, values in rounds.items()}
    fastest = {name: float(np.min(values)) for name, values in rounds.items()}
    return {
        "batch_size": batch,
        "precision": config.train.precision,
        "step_ms": step,
        "fastest_round_step_ms": fastest,
        "round_step_ms": rounds,
        "jpeg_over_memory": step["jpeg_pipeline"] / step["in_memory"],
        # Rounds disturbed by other work on a shared machine are slow for either source; the
        # fastest rounds show what each source allows.
        "jpeg_over_memory_fastest": fastest["jpeg_pipeline"] / fastest["in_memory"],
        "method": f"{args.pipeline_rounds} interleaved rounds of {args.pipeline_steps} steps per source, one model",
    }


def write_results(out: Path, rows: list[dict]) -> dict:
    from edgecls.fsutil import write_json, write_text

    path = out / "results.json"
    previous = json.loads(path.read_text()) if path.is_file() else {}
    by_recipe = {row["recipe"]: row for row in previous.get("runs", [])}
    by_recipe.update({row["recipe"]: row for row in rows})
    runs = list(by_recipe.values())
    reference = by_recipe.get(DEFAULT_RECIPE, runs[0])
    keys = ("train_seconds", "float_accuracy", "int8_accuracy", "int8_model", "int8_latency_ms", "int8_size_bytes")
    result = {
        "benchmark": "cifar10",
        **{key: reference[key] for key in keys},
        "reference_recipe": reference["recipe"],
        "machine": {**machine(), "load_at_end": os.getloadavg()},
        "versions": tool_versions(),
        "date": time.strftime("%Y-%m-%d"),
        "runs": runs,
    }
    write_json(path, result)
    write_text(out / "results.md", markdown(result))
    return result


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        "# CIFAR-10: trained with edgecls, deployed as int8 TFLite",
        "",
        f"Machine: {m.get('cpu')} ({m.get('cpus')} cores, {m.get('machine')}), no GPU; {result['date']}.",
        "Accuracy on the 10,000 test images of `../shared/datasets/cifar10.tar.gz` (JPEG re-encoded CIFAR-10).",
        "Latency: `edgecls bench`, TFLite int8, 1 thread, batch 1, p50 (median of 5 rounds of 200).",
        "",
        "| recipe | arch | input | epochs | precision | train time | budget here | float top-1 | int8 top-1 | "
        "int8 with TTA | int8 size | int8 p50 | input pipeline vs in-memory |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["runs"]:
        budget = r.get("budget")
        budget_cell = (f"{budget['budget_seconds'] / 60:.1f} min ({'within' if r['within_budget'] else 'OVER'})"
                       if budget else "not timed")
        tta = r.get("tta")
        tta_cell = f"{tta['int8']['tta_accuracy']:.2%}" if tta else "not measured"
        lines.append(
            f"| {r['recipe']} | {r['arch']} α{r['alpha']:g} | {r['img_size']}px | {r['epochs']} | "
            f"{r.get('precision', 'float32')} | {r['train_seconds'] / 60:.1f} min | {budget_cell} | "
            f"{r['float_accuracy']:.2%} | {r['int8_accuracy']:.2%} | {tta_cell} | "
            f"{r['int8_size_bytes'] / 1024:,.0f} KB | {r['int8_latency_ms']:.3f} ms | "
            f"{r['pipeline']['jpeg_over_memory']:.3f}× (fastest rounds "
            f"{r['pipeline'].get('jpeg_over_memory_fastest', float('nan')):.3f}×) |")
    for r in result["runs"]:
        if r["recipe"] in GOALS:
            goal, issue = GOALS[r["recipe"]]
            verdict = "met" if r["int8_accuracy"] >= goal else f"**short by {100 * (goal - r['int8_accuracy']):.2f} pt**"
            lines += ["", f"Goal of {issue} for {r['recipe']}: {goal:.0%} int8 top-1 on the test images; measured "
                      f"{r['int8_accuracy']:.2%}: {verdict}. What was tried to close the gap, and airbench94 on the "
                      "same files: `trials_whitened_cnn.md`, `airbench_reference.md`."]
    budgets = [r["budget"] for r in result["runs"] if r.get("budget")]
    if budgets:
        b = budgets[-1]
        lines += ["", f"Budget: 20 min where the {b['recipe']} reference trains at {BUDGET_REFERENCE_EPOCH_SECONDS} s "
                  f"per epoch, scaled by its epoch time measured in the same run ({b['rule']}): epochs of "
                  + ", ".join(f"{v:.1f} s" for v in b["epoch_seconds"])
                  + f" → {b['budget_seconds'] / 60:.1f} min here."]
    ttas = [r for r in result["runs"] if r.get("tta")]
    if ttas:
        lines += ["", "Test-time augmentation (beside the plain numbers, not in them): the mean over "
                  f"{len(ttas[0]['tta']['views'])} views ({', '.join(ttas[0]['tta']['views'])}); float with TTA: "
                  + ", ".join(f"{r['tta']['float']['tta_accuracy']:.2%} ({r['recipe']})" for r in ttas) + "."]
    lines += ["", "Input pipeline: median training-step time with edgecls' pipeline (decoded-JPEG cache, gather, "
              "augmentation) over the step time on the same augmented batches held in memory; "
              "interleaved rounds in one process. One-off JPEG decode of all 60,000 images: "
              + ", ".join(f"{r['decode_seconds']:.0f} s ({r['recipe']})" for r in result["runs"]) + ".", ""]
    for r in result["runs"]:
        lines.append(f"- `{r['command']}`")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.render_only:
        from edgecls.fsutil import write_text

        result = json.loads((args.out / "results.json").read_text())
        write_text(args.out / "results.md", markdown(result))
        print(markdown(result))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    if args.pipeline_only:
        rows = [remeasure_pipeline(recipe, args) for recipe in (args.recipe or [DEFAULT_RECIPE])]
    else:
        budget = time_reference(args)
        rows = [run_recipe(recipe, args, budget) for recipe in (args.recipe or [DEFAULT_RECIPE])]
    result = write_results(args.out, rows)
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
