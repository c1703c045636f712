"""Every optimization of one trained CIFAR-10 model, side by side: accuracy, size and speed.

For each run folder (trained by ``benchmarks/cifar10.py`` or ``edgecls train``) this script makes,
with edgecls' own commands (as Python functions):
  float32, dynamic-range, float16 and full-int8 (post-training) TFLite;
  int8 after quantization-aware training (``--qat-epochs``);
  50 % magnitude pruning (``--prune-epochs``), then post-training int8 of the pruned model;
  50 % pruning of the 1×1 convolutions under the XNNPACK policy, exported as sparse fp32 TFLite;
then measures every file: top-1 on the test split with ``edgecls bench`` (TFLite runtime), file
and gzip size, and latency (1 thread, batch 1) as the median over interleaved rounds — each round
times every file in turn — so drifting machine load hits all variants alike.

    python benchmarks/cifar10.py --data /tmp/cifar10 --out /tmp/c10 --recipe cifar10_mobilenet_v3_small
    python benchmarks/cifar10_variants.py --data /tmp/cifar10 --runs /tmp/c10/runs/cifar10_mobilenet_v3_small \\
        --out benchmarks/results/cifar10_variants

Writes OUT/cifar10_variants.json and .md; runs named again replace their rows. ``--render-only``
rewrites the table from the JSON and the runs' sidecars without measuring anything.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import edgecls  # noqa: E402
from edgecls.benchmarking.harness import machine_info  # noqa: E402
from edgecls.deploy.litert import ready_invoke  # noqa: E402
from edgecls.progress import progress_bar  # noqa: E402
from edgecls.run_folder import RunFolder  # noqa: E402
from edgecls.sidecar import file_sizes, tool_versions  # noqa: E402
from edgecls.timing import interleaved_latency  # noqa: E402

ORDER = ("float32", "dynamic", "float16", "int8", "qat_int8", "pruned_int8", "pruned_xnnpack_float32")
LABELS = {
    "float32": "float32",
    "dynamic": "dynamic range (int8 weights)",
    "float16": "float16",
    "int8": "int8 PTQ",
    "qat_int8": "int8 QAT",
    "pruned_int8": "pruned 50 % + int8 PTQ",
    "pruned_xnnpack_float32": "pruned 50 % 1×1 (XNNPACK policy), sparse fp32",
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the dataset the runs were trained on (for the test split)")
    parser.add_argument("--runs", nargs="+", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--qat-epochs", type=int, default=1)
    parser.add_argument("--qat-lr", type=float, default=1e-4)
    parser.add_argument("--prune-epochs", type=int, default=1)
    parser.add_argument("--skip-xnnpack", action="store_true", help="no sparse-inference row")
    parser.add_argument("--measure-only", action="store_true",
                        help="measure the exports already in the runs (give the epochs/lr they were made with)")
    parser.add_argument("--render-only", action="store_true",
                        help="rewrite the table from OUT/cifar10_variants.json and the runs' sidecars, measuring nothing")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved latency rounds")
    parser.add_argument("--runs-per-round", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20, help="untimed invocations of each file first")
    return parser.parse_args(argv)


def make_variants(run: Path, args) -> tuple[dict[str, Path], dict]:
    folder = RunFolder(run)
    seconds = {}
    t0 = time.perf_counter()
    edgecls.export(run, "tflite")
    edgecls.quantize(run, dynamic=True, float16=True, int8=True)
    seconds["ptq"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    edgecls.quantize(run, qat=True, epochs=args.qat_epochs, lr=args.qat_lr)
    seconds["qat"] = time.perf_counter() - t0
    extra = {}
    if not args.skip_xnnpack:
        t0 = time.perf_counter()
        report = edgecls.prune(run, sparsity=0.5, epochs=args.prune_epochs, for_xnnpack=True).report
        seconds["prune_xnnpack"] = time.perf_counter() - t0
        # The plain pruning below writes the same file names; keep the sparse model aside.
        shutil.copyfile(folder.export("pruned_float32", ".tflite"), folder.export("pruned_xnnpack_float32", ".tflite"))
        extra["xnnpack_policy"] = {k: report.get(k) for k in ("overall_sparsity", "keras_top1", "latency_ms")}
    t0 = time.perf_counter()
    pruned = edgecls.prune(run, sparsity=0.5, epochs=args.prune_epochs)
    report = pruned.report
    edgecls.quantize(run, int8=True, model=pruned.path)
    seconds["prune_int8"] = time.perf_counter() - t0
    extra["pruning"] = {k: report.get(k) for k in ("overall_sparsity", "keras_top1", "float_top1")}
    extra["seconds"] = {k: round(v, 1) for k, v in seconds.items()}
    extra["qat"] = qat_selection(run)
    return existing_variants(run), extra


def qat_selection(run: Path) -> dict:
    """What the QAT export's sidecar says of its fine-tuning: the epoch kept and validation top-1 by epoch."""
    sidecar = RunFolder(run).export("qat_int8", ".json")
    qat = json.loads(sidecar.read_text()).get("qat", {}) if sidecar.is_file() else {}
    return {k: qat[k] for k in ("kept_epoch", "val_accuracy_by_epoch") if k in qat}


def existing_variants(run: Path) -> dict[str, Path]:
    folder = RunFolder(run)
    return {name: folder.export(name, ".tflite") for name in ORDER if folder.export(name, ".tflite").is_file()}


def latencies(files: dict[str, Path], args) -> dict[str, dict]:
    """Every file's bare ``invoke()`` (1 thread), timed by edgecls' interleaved loop: each round times all."""
    calls = {name: ready_invoke(path, threads=1) for name, path in files.items()}
    total = len(calls) * (args.warmup + args.rounds * args.runs_per_round)
    with progress_bar("interleaved latency rounds", total) as advance:
        return interleaved_latency(calls, rounds=args.rounds, runs=args.runs_per_round, warmup=args.warmup,
                                   advance=advance)


def measure(run: Path, files: dict[str, Path], data, args) -> list[dict]:
    records = edgecls.bench(list(files.values()), data=data, runtime="tflite", threads=1, runs=10, rounds=1,
                            parity=False)
    timed = latencies(files, args)
    rows = []
    by_path = {Path(r["model"]).resolve(): r for r in records}
    float_top1 = by_path[files["float32"].resolve()]["accuracy"]
    for name, path in files.items():
        r = by_path[path.resolve()]
        sizes = file_sizes(path)
        rows.append({
            "variant": name,
            "label": LABELS[name],
            "top1": r["accuracy"],
            "change_pt": (r["accuracy"] - float_top1) * 100,
            "size_bytes": sizes["bytes"],
            "gzip_bytes": sizes["gzip_bytes"],
            "latency_p50_ms": timed[name]["median_ms"],
            "round_p50s_ms": timed[name]["round_medians_ms"],
            "images": r["images"],
        })
    fp32_ms = rows[0]["latency_p50_ms"]
    for row in rows:
        row["latency_vs_float32"] = row["latency_p50_ms"] / fp32_ms
    return rows


def describe(run: Path) -> dict:
    from edgecls.config import load_run_config

    config = load_run_config(run)
    metrics = json.loads(RunFolder(run).metrics.read_text())
    return {"run": run.name, "arch": config.model.arch, "alpha": config.model.alpha,
            "img_size": config.data.img_size, "epochs": metrics.get("epochs_run"),
            "train_seconds": metrics.get("train_seconds")}


def previous_entry(out: Path, run_name: str) -> dict:
    path = out / "cifar10_variants.json"
    models = json.loads(path.read_text()).get("models", []) if path.is_file() else []
    return next((m for m in models if m["run"] == run_name), {})


def write_results(out: Path, entries: list[dict]) -> dict:
    path = out / "cifar10_variants.json"
    previous = json.loads(path.read_text()) if path.is_file() else {}
    by_run = {e["run"]: e for e in previous.get("models", [])}
    by_run.update({e["run"]: e for e in entries})
    result = {"benchmark": "cifar10_variants",
              "machine": {**machine_info(), "cpus": os.cpu_count(), "load_at_end": os.getloadavg()},
              "versions": tool_versions(), "date": time.strftime("%Y-%m-%d"), "models": list(by_run.values())}
    return save_results(out, result)


def save_results(out: Path, result: dict) -> dict:
    """OUT/cifar10_variants.json and the table written from it."""
    from edgecls.fsutil import write_json, write_text

    write_json(out / "cifar10_variants.json", result)
    write_text(out / "cifar10_variants.md", markdown(result))
    return result


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = ["# CIFAR-10: one trained model, every optimization", "",
             f"Machine: {m.get('cpu')} ({m.get('cpus')} cores), no GPU; {result['date']}. TFLite, "
             f"1 thread, batch 1: latency is the median of per-round p50s over interleaved rounds (every file "
             "of a model timed in turn in each round, bare `invoke()` loop). Top-1 on the 10,000 CIFAR-10 test "
             "images, measured through `edgecls bench`.", ""]
    for entry in result["models"]:
        d = entry["model"]
        lines += [f"## {d['arch']} α{d['alpha']:g}, {d['img_size']} px, {d['epochs']} epochs "
                  f"({(d['train_seconds'] or 0) / 60:.1f} min of training)", "",
                  "| variant | top-1 | vs float | size | gzip | p50 latency | vs fp32 |",
                  "|---|---|---|---|---|---|---|"]
        for r in entry["rows"]:
            lines.append(f"| {r['label']} | {r['top1']:.2%} | {r['change_pt']:+.2f} pt | "
                         f"{r['size_bytes'] / 1024:,.0f} KB | {r['gzip_bytes'] / 1024:,.0f} KB | "
                         f"{r['latency_p50_ms']:.3f} ms | {r['latency_vs_float32']:.2f}× |")
        extra = entry.get("extra", {})
        pruning = extra.get("pruning", {})
        lines += ["", f"Pruning reached {pruning.get('overall_sparsity', 0):.1%} overall sparsity "
                  f"(Keras top-1 {pruning.get('keras_top1', 0):.2%} before int8). "
                  f"QAT fine-tuned for {entry.get('qat_epochs')} epoch(s) at Adam lr {entry.get('qat_lr', 1e-4):g}"
                  f"{_qat_kept(extra.get('qat', {}))}, pruning for {entry.get('prune_epochs')} epoch(s).", ""]
    return "\n".join(lines) + "\n"


def _qat_kept(qat: dict) -> str:
    if "kept_epoch" not in qat:
        return ""
    history = " → ".join(f"{a:.2%}" for a in qat.get("val_accuracy_by_epoch", []))
    kept = "the calibrated start (epoch 0)" if qat["kept_epoch"] == 0 else f"epoch {qat['kept_epoch']}"
    return f"; it kept {kept}, best on validation ({history})"


def render_only(args) -> int:
    path = args.out / "cifar10_variants.json"
    result = json.loads(path.read_text())
    for entry in result["models"]:
        run = next((r for r in args.runs if r.name == entry["run"]), None)
        if run is not None:
            entry.setdefault("extra", {})["qat"] = qat_selection(run)
    print(markdown(save_results(args.out, result)))
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.render_only:
        return render_only(args)
    entries = []
    for run in args.runs:
        made = {"qat_epochs": args.qat_epochs, "qat_lr": args.qat_lr, "prune_epochs": args.prune_epochs}
        if args.measure_only:  # files made earlier, with the settings given again on this command line
            files = existing_variants(run)
            made["extra"] = {**previous_entry(args.out, run.name).get("extra", {}), "qat": qat_selection(run)}
        else:
            files, made["extra"] = make_variants(run, args)
        entries.append({"run": run.name, "model": describe(run), "rows": measure(run, files, args.data, args),
                        **made})
    print(markdown(write_results(args.out, entries)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
