"""Is int8 faster than float? Every registered architecture at 224x224, 1 thread, batch 1.

    python benchmarks/int8_speed.py [--size 224] [--archs a,b] [--runs 200] [--rounds 5]

For each architecture, side by side in one process (timing loops interleaved round by round, so
machine drift hits every model alike): the fp32 TFLite export of the *stock* Keras architecture
(the reference users have today), the same stock model converted naively to int8, and edgecls'
int8 model — its XNNPACK partitions and latency against the stock fp32 export. Stock models are
converted from the graph as Keras builds it (``speed_rewrites=False``), edgecls' as edgecls converts them.

Weights: random, with BatchNorm statistics estimated on 24 smooth synthetic images (a stand-in for
trained weights, which these offline machines cannot download). With raw random initialisation
the activations grow layer after layer without bound, which no trained network does, and XNNPACK's
int8 ADD refuses the resulting scale ratios — a measurement artefact, not a property of the model.
Writes benchmarks/results/int8_speed.json and .md.
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

from machine_record import machine as machine_record  # noqa: E402
from machine_record import text as machine_text  # noqa: E402

import edgecls  # noqa: E402
from edgecls.converters.tflite_convert import convert  # noqa: E402
from edgecls.converters.tflite_inspect import inspect_tflite  # noqa: E402
from edgecls.deploy.litert import ready_invoke  # noqa: E402
from edgecls.models import get_model_spec  # noqa: E402
from edgecls.models.architectures import classifier_head  # noqa: E402
from edgecls.models.modeling import build_model  # noqa: E402
from edgecls.tf import keras, tf  # noqa: E402
from edgecls.timing import interleaved_latency  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
STOCK = {
    "mobilenet_v3_small": lambda t: keras.applications.MobileNetV3Small(input_tensor=t, include_top=False, weights=None),
    "mobilenet_v3_small_minimalistic": lambda t: keras.applications.MobileNetV3Small(
        input_tensor=t, include_top=False, weights=None, minimalistic=True),
    "mobilenet_v3_large": lambda t: keras.applications.MobileNetV3Large(input_tensor=t, include_top=False, weights=None),
    "resnet50": lambda t: keras.applications.ResNet50(input_tensor=t, include_top=False, weights=None),
}


def stock_model(arch: str, size: int):
    """The architecture as Keras ships it (keras.applications), with the same classifier head."""
    if arch.startswith("efficientnet_"):
        app = getattr(keras.applications, "EfficientNet" + arch.split("_")[1].upper())
        builder = lambda t: app(input_tensor=t, include_top=False, weights=None)  # noqa: E731
    elif arch in STOCK:
        builder = STOCK[arch]
    else:
        return None  # edgecls' own architectures have no other "stock" form
    inputs = keras.Input((size, size, 3))
    return keras.Model(inputs, classifier_head(builder(inputs).output, 10, 0.2))


def smooth_images(count: int, size: int, seed: int = 0) -> np.ndarray:
    small = np.random.default_rng(seed).integers(0, 256, (count, 8, 8, 3)).astype("float32")
    return tf.image.resize(small, (size, size), "bilinear").numpy().clip(0, 255).astype(np.uint8)


def calibrate_batchnorm(model, images: np.ndarray) -> None:
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0
    for start in range(0, len(images), 8):
        model(images[start:start + 8].astype("float32"), training=True)


def latencies(blobs: dict[str, bytes], runs: int, rounds: int) -> dict[str, dict]:
    """p50/p90 over all ``runs`` invocations of each model (1 thread), timed in interleaved rounds."""
    calls = {name: ready_invoke(model_content=blob, threads=1, seed=1) for name, blob in blobs.items()}
    timed = interleaved_latency(calls, rounds=rounds, runs=max(1, runs // rounds), warmup=10)
    return {name: {"p50": t["latency_ms"]["p50"], "p90": t["latency_ms"]["p90"], "round_spread_pct": t["spread_pct"]}
            for name, t in timed.items()}


def machine() -> dict:
    import ai_edge_litert

    record = machine_record()
    return {**record, "cores": record["cpus"], "tensorflow": tf.__version__,
            "ai_edge_litert": getattr(ai_edge_litert, "__version__", "?"), "threads": 1, "batch": 1}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--archs", default=",".join(edgecls.list_models()))
    parser.add_argument("--runs", type=int, default=200, help="timed invocations per model, over all rounds")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS / "int8_speed")
    parser.add_argument("--add", action="store_true",
                        help="replace only these architectures' rows in an existing result (a new architecture)")
    parser.add_argument("--render-only", action="store_true", help="rewrite the .md from the JSON, measure nothing")
    args = parser.parse_args(argv)
    if args.render_only:
        args.out.with_suffix(".md").write_text(markdown(json.loads(args.out.with_suffix(".json").read_text())))
        return 0
    images = smooth_images(48, args.size)
    rows = []
    for arch in args.archs.split(","):
        spec = get_model_spec(arch)
        ours = build_model(arch, args.size, 10)
        calibrate_batchnorm(ours, images[:24])
        blobs = {"edgecls_int8": convert(ours, "int8", calibration=images[24:]), "edgecls_fp32": convert(ours, "float32")}
        stock = stock_model(arch, args.size)
        if stock is not None:
            calibrate_batchnorm(stock, images[:24])
            blobs["stock_fp32"] = convert(stock, "float32", speed_rewrites=False)
            blobs["stock_int8_naive"] = convert(stock, "int8", calibration=images[24:], speed_rewrites=False)
        times = latencies(blobs, args.runs, args.rounds)
        reference = "stock_fp32" if "stock_fp32" in times else "edgecls_fp32"
        info = inspect_tflite(blobs["edgecls_int8"])
        row = {
            "arch": arch, "test_only": spec.test_only, "size": args.size, "reference": reference,
            "latency_ms": {k: v["p50"] for k, v in times.items()}, "detail": times,
            "int8_vs_reference": times["edgecls_int8"]["p50"] / times[reference]["p50"],
            "int8_partitions": info["xnnpack_partitions"], "int8_float_ops": info["float_ops"],
        }
        if "stock_int8_naive" in blobs:
            row["naive_int8_partitions"] = inspect_tflite(blobs["stock_int8_naive"])["xnnpack_partitions"]
        rows.append(row)
        print(f"{arch:34s} int8 {times['edgecls_int8']['p50']:.2f} ms vs {reference} {times[reference]['p50']:.2f} ms "
              f"= {row['int8_vs_reference']:.2f}x, {info['xnnpack_partitions']} partition(s)", flush=True)
        keras.backend.clear_session()
    command = "python benchmarks/int8_speed.py " + " ".join(argv or sys.argv[1:])
    result = {"machine": machine(), "method": __doc__.strip().split("\n\n", 2)[2].split("Writes")[0].strip(),
              "command": command, "date": time.strftime("%Y-%m-%d"), "rows": rows}
    if args.add and args.out.with_suffix(".json").is_file():
        result = merged(json.loads(args.out.with_suffix(".json").read_text()), rows, command)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(result))
    return 0


def merged(previous: dict, rows: list[dict], command: str) -> dict:
    # Rows from separate runs are not side by side; each keeps the command (and date) that made it.
    for row in rows:
        row["command"] = f"{command} ({time.strftime('%Y-%m-%d')})"
    new = {row["arch"]: row for row in rows}
    kept = [row for row in previous["rows"] if row["arch"] not in new]
    order = {name: i for i, name in enumerate(edgecls.list_models())}
    previous["rows"] = sorted(kept + rows, key=lambda row: order.get(row["arch"], len(order)))
    return previous


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [f"# int8 vs float latency, {result['rows'][0]['size']}x{result['rows'][0]['size']}, 1 thread, batch 1", "",
             f"Machine: {machine_text(m)}; Python {m['python']}, TensorFlow {m['tensorflow']}, "
             f"ai-edge-litert {m['ai_edge_litert']} (XNNPACK). Command: `{result['command']}`.", "",
             result["method"], "",
             "p50 latency in ms, all models timed side by side in one process (interleaved rounds).", "",
             "| architecture | stock fp32 | stock int8 (naive) | edgecls fp32 | edgecls int8 | int8 / stock fp32 | int8 XNNPACK partitions (naive) |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for r in result["rows"]:
        lat = r["latency_ms"]
        fmt = lambda k, lat=lat: f"{lat[k]:.2f}" if k in lat else "—"  # noqa: E731
        name = r["arch"] + (" (test-only)" if r["test_only"] else "")
        naive = f" ({r['naive_int8_partitions']})" if "naive_int8_partitions" in r else ""
        lines.append(f"| {name} | {fmt('stock_fp32')} | {fmt('stock_int8_naive')} | {fmt('edgecls_fp32')} | "
                     f"{fmt('edgecls_int8')} | **{r['int8_vs_reference']:.2f}×** | {r['int8_partitions']}{naive} |")
    lines += ["", "Where there is no stock form (edgecls' own CNNs), the reference is edgecls' fp32 export."]
    lines += [f"Row {r['arch']} was measured later, by `{r['command']}`." for r in result["rows"] if "command" in r]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
