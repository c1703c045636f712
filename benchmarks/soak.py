"""Does resident memory stay flat over 10,000 predictions in one process?

Each model is soaked in a fresh process that imports only the deploy runtime (no TensorFlow),
as on the device: ``edgecls.deploy.runtimes.open_model``, then ``Runtime.predict`` on one image
per call, like a camera loop. After a warm-up, N predictions cycle through a pool of distinct
images while the resident set (VmRSS) is sampled; the figure is its growth from the end of the
warm-up to the end of the run. Issue 6 bounds it at 5 %. The ``files`` mode decodes a PNG with
``load_image_array`` before every prediction, so the loader is soaked too.

    python benchmarks/soak.py                       # simple_cnn 64×64: int8 and float32 TFLite, ONNX
    python benchmarks/soak.py --quick --out-dir /tmp/soak              # a smoke run of the script
    python benchmarks/soak.py --measure MODEL [--predictions N] [--files DIR]   # one soak, JSON out

Writes ``soak.json`` and ``soak.md`` into ``--out-dir`` (default ``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine_record import machine  # noqa: E402
from machine_record import text as machine_text  # noqa: E402

from edgecls.benchmarking.timing import current_rss_mb  # noqa: E402

LIMIT_PCT = 5.0
POOL = 64  # distinct images cycled through, so every call copies fresh pixels


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="simple_cnn")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--predictions", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--samples", type=int, default=20, help="memory readings during the run")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="tiny model, 1,000 predictions: checks the script works")
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--render-only", action="store_true", help="rewrite the .md from the JSON, measure nothing")
    parser.add_argument("--measure", type=Path, help="soak this model file in this process; print JSON")
    parser.add_argument("--files", type=Path, help="with --measure: decode images from this folder each call")
    args = parser.parse_args(argv)
    if args.quick:
        args.arch, args.size, args.predictions, args.warmup = "tiny_cnn", 32, 1_000, 100
    return args


def soak(model_path: Path, *, predictions: int, warmup: int, samples: int, threads: int = 1,
         files: Path | None = None) -> dict:
    """Open ``model_path`` and run ``warmup`` + ``predictions`` single-image predictions."""
    from edgecls.deploy.runtimes import open_model

    rss_start = current_rss_mb()
    runtime = open_model(model_path, threads=threads, quiet=True)
    height, width = runtime.input_size
    if files is not None:
        from edgecls.data.images import load_image_array

        names = sorted(str(p) for p in Path(files).iterdir())[:POOL]

        def image(i):
            return load_image_array(names[i % len(names)], (height, width))
    else:
        pool = np.random.default_rng(0).integers(0, 256, (POOL, height, width, 3), dtype=np.uint8)

        def image(i):
            return pool[i % POOL]

    for i in range(warmup):
        runtime.predict(image(i))
    gc.collect()
    rss_warm = current_rss_mb()
    every = max(1, predictions // max(1, samples))
    readings = [[0, rss_warm]]
    votes = np.zeros(runtime.num_classes, np.int64)
    started = time.perf_counter()
    for i in range(predictions):
        probs = runtime.predict(image(warmup + i))
        if not np.all(np.isfinite(probs)) or abs(float(probs.sum()) - 1.0) > 1e-3:
            raise SystemExit(f"prediction {i} is not a probability vector: {probs}")
        votes[int(probs.argmax())] += 1
        if (i + 1) % every == 0:
            readings.append([i + 1, current_rss_mb()])
    seconds = time.perf_counter() - started
    gc.collect()
    rss_end = current_rss_mb()
    half = [mb for count, mb in readings if count >= predictions // 2]
    return {
        "model": model_path.name,
        "runtime": runtime.name,
        "mode": "files" if files is not None else "arrays",
        "predictions": predictions,
        "warmup": warmup,
        "rss_before_load_mb": rss_start,
        "rss_after_warmup_mb": rss_warm,
        "rss_end_mb": rss_end,
        "rss_max_mb": max(mb for _, mb in readings),
        "growth_pct": (rss_end - rss_warm) / rss_warm * 100,
        "max_growth_pct": (max(mb for _, mb in readings) - rss_warm) / rss_warm * 100,
        "second_half_growth_mb": half[-1] - half[0] if len(half) > 1 else 0.0,
        "readings": readings,
        "ms_per_prediction": seconds / predictions * 1e3,
        "votes": votes.tolist(),
        "tensorflow_imported": "tensorflow" in sys.modules,
    }


def measure_in_child(model: Path, args, files: Path | None = None) -> dict:
    command = [sys.executable, __file__, "--measure", str(model), "--predictions", str(args.predictions),
               "--warmup", str(args.warmup), "--samples", str(args.samples), "--threads", str(args.threads)]
    if files is not None:
        command += ["--files", str(files)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"soak of {model.name} failed:\n{done.stderr}")
    return json.loads(done.stdout)


def build(arch: str, size: int, folder: Path) -> list[Path]:
    from runtime_overhead import LABELS as labels
    from runtime_overhead import build as build_tflite

    from edgecls.converters.onnx_export import export_onnx
    from edgecls.publish import write_sidecar
    from edgecls.sidecar import build_sidecar

    built = build_tflite(arch, size, ["int8", "float32"], folder)
    path = export_onnx(built["keras"], folder / "onnx_float32.onnx")
    write_sidecar(path, build_sidecar(model_file=path, fmt="onnx", variant="float32", labels=labels,
                                      architecture=arch, img_size=size, input_dtype="float32",
                                      output_kind="probabilities", batch=None))
    return [built["tflite"]["int8"], built["tflite"]["float32"], path]


def image_files(folder: Path, size: int) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(POOL):
        Image.fromarray(rng.integers(0, 256, (size + i % 7, size, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    return folder


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.measure is not None:
        print(json.dumps(soak(args.measure, predictions=args.predictions, warmup=args.warmup, samples=args.samples,
                              threads=args.threads, files=args.files)))
        return 0
    from edgecls.fsutil import write_json, write_text
    from edgecls.sidecar import tool_versions

    if args.render_only:
        write_text(args.out_dir / "soak.md", markdown(json.loads((args.out_dir / "soak.json").read_text())))
        return 0
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        models = build(args.arch, args.size, tmp)
        rows = [measure_in_child(model, args) for model in models]
        rows.append(measure_in_child(models[0], args, files=image_files(tmp / "images", args.size)))
    result = {
        "benchmark": "soak",
        "quick": bool(args.quick),
        "arch": args.arch, "img_size": args.size, "threads": args.threads, "batch": 1,
        "predictions": args.predictions, "warmup": args.warmup, "limit_pct": LIMIT_PCT,
        "rows": rows,
        "checks": {f"{r['model']} ({r['mode']}): RSS growth < {LIMIT_PCT:g} %": r["growth_pct"] < LIMIT_PCT
                   for r in rows},
        "seconds": round(time.time() - started, 1),
        "load_average_after": list(os.getloadavg()),
        "date": time.strftime("%Y-%m-%d"),
        "machine": {**machine(), "platform": platform.platform()},
        "versions": tool_versions(),
    }
    report = markdown(result)
    write_json(args.out_dir / "soak.json", result)
    write_text(args.out_dir / "soak.md", report)
    print(report)
    return 0 if all(result["checks"].values()) else 1


def markdown(result: dict) -> str:
    lines = [
        f"# Soak: {result['predictions']:,} predictions per model in one process, {result['arch']} "
        f"{result['img_size']}×{result['img_size']}, batch 1, {result['threads']} thread(s)"
        f"{' (QUICK smoke run: not a measurement)' if result['quick'] else ''}",
        "",
        f"Machine: {machine_text(result['machine'])}. "
        f"Each row is a fresh process without TensorFlow: `open_model`, {result['warmup']} warm-up predictions, "
        f"then `Runtime.predict` on one image per call. Growth = resident set at the end against after warm-up.",
        "",
        "| model | runtime | input | RSS after warm-up MB | RSS end MB | growth | max during run | "
        "ms / prediction |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        source = "PNG decoded each call" if r["mode"] == "files" else "uint8 arrays"
        lines.append(f"| {r['model']} | {r['runtime']} | {source} | {r['rss_after_warmup_mb']:.1f} | "
                     f"{r['rss_end_mb']:.1f} | {r['growth_pct']:+.2f} % | {r['max_growth_pct']:+.2f} % | "
                     f"{r['ms_per_prediction']:.3f} |")
    lines += ["", "Checks: " + "; ".join(f"{name}: {'yes' if ok else 'NO'}" for name, ok in result["checks"].items()),
              ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
