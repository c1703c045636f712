"""How much does edgecls' runtime layer cost, and how much faster than Keras is it per image?

Measures, for one model converted to TFLite (float32 and int8), on one image at batch 1:
  bare     a hand-written ``interpreter.invoke()`` loop, input set once (the floor);
  bench    ``edgecls bench``'s p50 on the same file, same thread count, in the same run;
  keras    ``keras.Model.predict`` on one image, per call (what a notebook user does);
  keras_fn the Keras runtime's compiled call (``tf.function``), for comparison.
The issue's targets: bench p50 within 10 % of bare; the deploy runtime at batch 1 at least 20×
faster than Model.predict per image.

Run on a quiet machine (nothing else using the CPU), from the repository root:

    python benchmarks/runtime_overhead.py                    # MobileNetV3Small 224, 1 thread → results/
    python benchmarks/runtime_overhead.py --quick --out-dir /tmp/overhead   # a 20-second smoke run

Writes ``runtime_overhead.json`` and ``runtime_overhead.md`` into ``--out-dir``
(default ``benchmarks/results``). Bare and bench rounds are interleaved so drifting load hits both.
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

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine_record import machine  # noqa: E402
from machine_record import text as machine_text  # noqa: E402

import edgecls  # noqa: E402
from edgecls.benchmarking.timing import bare_invoke_times, latency_fields  # noqa: E402
from edgecls.sidecar import tool_versions  # noqa: E402
from edgecls.timing import interleaved_latency, percentiles_ms  # noqa: E402

LABELS = ("a", "b", "c")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="mobilenet_v3_small")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--variants", default="float32,int8", help="TFLite variants, comma-separated")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=200, help="timed invocations per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--keras-runs", type=int, default=50,
                        help="Model.predict (and compiled-call) runs per round")
    parser.add_argument("--quick", action="store_true", help="small model and few runs: checks the script works")
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--render-only", action="store_true", help="rewrite the .md from the JSON, measure nothing")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.runs, args.rounds, args.keras_runs = 96, 30, 2, 10
    return args


def build(arch: str, size: int, variants, folder: Path) -> dict:
    from edgecls.converters.tflite_convert import convert
    from edgecls.models.modeling import build_model
    from edgecls.publish import write_sidecar
    from edgecls.sidecar import build_sidecar

    model = build_model(arch, size, len(LABELS), weights="none")  # weights do not change the timing
    calibration = np.random.default_rng(0).integers(0, 256, (16, size, size, 3), dtype=np.uint8)
    files = {}
    for variant in variants:
        path = folder / f"{variant}.tflite"
        path.write_bytes(convert(model, variant, calibration=calibration if variant == "int8" else None))
        integer = variant == "int8"
        write_sidecar(path, build_sidecar(
            model_file=path, fmt="tflite", variant=variant, labels=LABELS, architecture=arch, img_size=size,
            input_dtype="uint8" if integer else "float32", output_kind="logits" if integer else "probabilities"))
        files[variant] = path
    return {"keras": model, "tflite": files}


def synthetic_data(folder: Path, size: int) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in LABELS:
        (folder / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / label / "0.png")
    return folder


def measure_tflite(path: Path, data: Path, image, args) -> dict:
    bare_p50, bench_p50, bench_records = [], [], []
    for _ in range(args.rounds):
        samples = bare_invoke_times(path, threads=args.threads, runs=args.runs, warmup=10, image=image)
        bare_p50.append(percentiles_ms(samples)["p50"])
        record = edgecls.bench([path], data=data, runtime="tflite", threads=args.threads, runs=args.runs, rounds=1,
                               warmup=10, e2e_images=3, verbose=0)[0]
        bench_p50.append(record["latency_ms"]["p50"])
        bench_records.append(record)
    bare, ours = float(np.median(bare_p50)), float(np.median(bench_p50))
    return {"file": str(path.name), "size_bytes": path.stat().st_size, "bare_p50_ms": bare, "bench_p50_ms": ours,
            "bench_over_bare": ours / bare, "bare_round_p50s_ms": bare_p50, "bench_round_p50s_ms": bench_p50,
            "bench_end_to_end_p50_ms": float(np.median([r["end_to_end_ms"]["p50"] for r in bench_records])),
            "backend": bench_records[0]["backend"]}


def measure_keras(model, image, args) -> dict:
    from edgecls.tf import tf

    batch = image.astype(np.float32)
    call = tf.function(lambda x: model(x, training=False))
    calls = {"predict": lambda: model.predict(batch, verbose=0), "tf_function": lambda: call(batch).numpy()}
    # Side by side, so both see the same machine; Model.predict is slow, hence its own run count.
    timed = interleaved_latency(calls, rounds=args.rounds, runs=args.keras_runs, warmup=3)
    predict, compiled = timed["predict"], timed["tf_function"]
    return {"predict_p50_ms": predict["latency_ms"]["p50"],
            "predict_rounds": latency_fields(predict, runs=args.keras_runs, warmup=3)["rounds"],
            "tf_function_p50_ms": compiled["latency_ms"]["p50"],
            "tf_function_rounds": latency_fields(compiled, runs=args.keras_runs, warmup=3)["rounds"]}


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.render_only:
        result = json.loads((args.out_dir / "runtime_overhead.json").read_text())
        (args.out_dir / "runtime_overhead.md").write_text(markdown(result))
        return 0
    from edgecls.tf import tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    load_before = os.getloadavg()
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        built = build(args.arch, args.size, variants, tmp)
        data = synthetic_data(tmp / "data", args.size)
        image = np.random.default_rng(1).integers(0, 256, (1, args.size, args.size, 3), dtype=np.uint8)
        keras = measure_keras(built["keras"], image, args)
        tflite = {variant: measure_tflite(path, data, image, args) for variant, path in built["tflite"].items()}
    for row in tflite.values():
        row["keras_predict_over_bench"] = keras["predict_p50_ms"] / row["bench_p50_ms"]
    result = {
        "benchmark": "runtime_overhead",
        "quick": bool(args.quick),
        "arch": args.arch, "img_size": args.size, "threads": args.threads, "batch": 1,
        "runs_per_round": args.runs, "rounds": args.rounds, "keras_runs_per_round": args.keras_runs,
        "keras": keras, "tflite": tflite,
        "checks": {
            f"{v}: bench p50 within 10% of bare invoke": row["bench_over_bare"] <= 1.10 for v, row in tflite.items()
        } | {
            f"{v}: runtime >= 20x faster than Model.predict": row["keras_predict_over_bench"] >= 20
            for v, row in tflite.items()
        },
        "load_average_before_after": [list(load_before), list(os.getloadavg())],
        "seconds": time.time() - started,
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine() | {"platform": platform.platform()},
        "versions": tool_versions(),
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "runtime_overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out_dir / "runtime_overhead.md").write_text(markdown(result))
    print(markdown(result))
    return 0 if all(result["checks"].values()) else 1


def markdown(result: dict) -> str:
    lines = [
        f"# Runtime overhead: {result['arch']} {result['img_size']}×{result['img_size']}, batch 1, "
        f"{result['threads']} thread(s){' (QUICK smoke run: not a measurement)' if result['quick'] else ''}",
        "",
        f"Machine: {machine_text(result['machine'])}, "
        f"load average before/after {result['load_average_before_after'][0][0]:.2f}/"
        f"{result['load_average_before_after'][1][0]:.2f}; {result['rounds']} interleaved rounds of "
        f"{result['runs_per_round']} runs; medians of round p50s.",
        "",
        "| model | bare invoke p50 ms | bench p50 ms | bench / bare | end-to-end p50 ms | Model.predict p50 ms "
        "| predict / bench |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for variant, row in result["tflite"].items():
        lines.append(f"| {variant}.tflite ({row['backend']}) | {row['bare_p50_ms']:.3f} | {row['bench_p50_ms']:.3f} | "
                     f"{row['bench_over_bare']:.3f} | {row['bench_end_to_end_p50_ms']:.3f} | "
                     f"{result['keras']['predict_p50_ms']:.2f} | {row['keras_predict_over_bench']:.1f}× |")
    lines += ["", f"Keras compiled call (tf.function) p50: {result['keras']['tf_function_p50_ms']:.3f} ms.", "",
              "Checks: " + "; ".join(f"{name}: {'yes' if ok else 'NO'}" for name, ok in result["checks"].items()), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
