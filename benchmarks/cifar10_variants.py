"""Every optimization of one trained CIFAR-10 model, side by side: accuracy, size and speed.

For each run folder (trained by ``benchmarks/cifar10.py`` or ``edgecls train``) this script makes,
with edgecls' own commands (as Python functions):
  float32, dynamic-range, float16 and full-int8 (post-training) TFLite;
  int8 after quantization-aware training (``--qat-epochs``);
  50 % magnitude pruning (``--prune-epochs``), then post-training int8 of the pruned model;
  50 % pruning of the 1×1 convolutions under the XNNPACK policy, exported as sparse fp32 TFLite;
the three fine-tuned ones once per ``--optimizers`` choice (edgecls' ``--fine-tune-optimizer``:
``adam``, or ``recipe``, the run's own training optimizer), kept as ``<variant>_<optimizer>.tflite``.
It then measures every file: top-1 on the validation split (the run's own, what a choice is made
on) and on the test split with ``edgecls bench`` (TFLite runtime), file and gzip size, and latency
(1 thread, batch 1) as the median over interleaved rounds — each round times every file in turn —
so drifting machine load hits all variants alike. With two optimizers the table says which one
scores better on validation over the fine-tuned variants: the default edgecls should keep.

    python benchmarks/cifar10.py --data /tmp/cifar10 --out /tmp/c10 --recipe cifar10_mobilenet_v3_small
    python benchmarks/cifar10_variants.py --data /tmp/cifar10 --runs /tmp/c10/runs/cifar10_mobilenet_v3_small \\
        --optimizers adam recipe --out benchmarks/results

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
from edgecls.devices.machine_probe import host_description  # noqa: E402
from edgecls.progress import progress_bar  # noqa: E402
from edgecls.run_folder import RunFolder  # noqa: E402
from edgecls.sidecar import file_sizes, tool_versions  # noqa: E402
from edgecls.timing import interleaved_latency  # noqa: E402
from edgecls.training.fine_tune import DEFAULT_OPTIMIZER, OPTIMIZERS  # noqa: E402

POST_TRAINING = ("float32", "dynamic", "float16", "int8")
FINE_TUNED = ("qat_int8", "pruned_int8", "pruned_xnnpack_float32")  # one file per fine-tuning optimizer
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
    parser.add_argument("--optimizers", nargs="+", choices=OPTIMIZERS, default=[DEFAULT_OPTIMIZER],
                        help="fine-tune QAT and pruning with each (--fine-tune-optimizer), side by side")
    parser.add_argument("--qat-epochs", type=int, default=1)
    parser.add_argument("--prune-epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=None,
                        help="fine-tuning rate of QAT and pruning (default: each optimizer's own, as edgecls')")
    parser.add_argument("--skip-xnnpack", action="store_true", help="no sparse-inference row")
    parser.add_argument("--measure-only", action="store_true",
                        help="measure the exports already in the runs (give the epochs/optimizers they were made with)")
    parser.add_argument("--render-only", action="store_true",
                        help="rewrite the table from OUT/cifar10_variants.json, measuring nothing")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved latency rounds")
    parser.add_argument("--runs-per-round", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20, help="untimed invocations of each file first")
    return parser.parse_args(argv)


def tuned_name(variant: str, optimizer: str) -> str:
    return f"{variant}_{optimizer}"


def make_variants(run: Path, args) -> tuple[dict[str, Path], dict]:
    t0 = time.perf_counter()
    edgecls.export(run, "tflite")
    edgecls.quantize(run, dynamic=True, float16=True, int8=True)
    extra = {"seconds": {"ptq": round(time.perf_counter() - t0, 1)},
             "tuned": {optimizer: fine_tuned_variants(run, optimizer, args) for optimizer in args.optimizers}}
    return existing_variants(run, args.optimizers), extra


def fine_tuned_variants(run: Path, optimizer: str, args) -> dict:
    """QAT and pruning fine-tuned with ``optimizer``; the files kept aside as <variant>_<optimizer>.tflite."""
    folder = RunFolder(run)
    seconds, made = {}, {}

    def keep(variant: str, source: str) -> None:
        shutil.copyfile(folder.export(source, ".tflite"), folder.export(tuned_name(variant, optimizer), ".tflite"))

    t0 = time.perf_counter()
    edgecls.quantize(run, qat=True, epochs=args.qat_epochs, lr=args.lr, fine_tune_optimizer=optimizer)
    seconds["qat"] = time.perf_counter() - t0
    keep("qat_int8", "qat_int8")
    made["qat"] = fine_tuning(folder.export("qat_int8", ".json"), "qat")
    if not args.skip_xnnpack:
        t0 = time.perf_counter()
        report = edgecls.prune(run, sparsity=0.5, epochs=args.prune_epochs, lr=args.lr, for_xnnpack=True,
                               fine_tune_optimizer=optimizer).report
        seconds["prune_xnnpack"] = time.perf_counter() - t0
        keep("pruned_xnnpack_float32", "pruned_float32")  # the plain pruning below writes the same names
        made["xnnpack_policy"] = {k: report.get(k) for k in ("overall_sparsity", "keras_top1", "latency_ms")}
    t0 = time.perf_counter()
    pruned = edgecls.prune(run, sparsity=0.5, epochs=args.prune_epochs, lr=args.lr, fine_tune_optimizer=optimizer)
    edgecls.quantize(run, int8=True, model=pruned.path)
    seconds["prune_int8"] = time.perf_counter() - t0
    keep("pruned_int8", "pruned_int8")
    made["pruning"] = {k: pruned.report.get(k) for k in ("overall_sparsity", "keras_top1", "float_top1")}
    made["pruning"].update(fine_tuning(folder.export("pruned_int8", ".json"), "pruning"))
    made["seconds"] = {k: round(v, 1) for k, v in seconds.items()}
    return made


def fine_tuning(sidecar: Path, block: str) -> dict:
    """What an export's sidecar says of its fine-tuning: optimizer, rate, epoch kept, validation by epoch."""
    made = json.loads(sidecar.read_text()).get(block, {}) if sidecar.is_file() else {}
    return {k: made[k] for k in ("optimizer", "optimizer_class", "lr", "kept_epoch", "val_accuracy_by_epoch")
            if k in made}


def existing_variants(run: Path, optimizers) -> dict[str, Path]:
    folder = RunFolder(run)
    names = [*POST_TRAINING, *(tuned_name(v, o) for o in optimizers for v in FINE_TUNED)]
    return {name: folder.export(name, ".tflite") for name in names if folder.export(name, ".tflite").is_file()}


def split_of(variant: str) -> tuple[str, str | None]:
    """(the variant, the fine-tuning optimizer or None) of a file stem."""
    for base in FINE_TUNED:
        optimizer = variant[len(base) + 1:]
        if variant.startswith(base + "_") and optimizer in OPTIMIZERS:
            return base, optimizer
    return variant, None


def latencies(files: dict[str, Path], args) -> dict[str, dict]:
    """Every file's bare ``invoke()`` (1 thread), timed by edgecls' interleaved loop: each round times all."""
    calls = {name: ready_invoke(path, threads=1) for name, path in files.items()}
    total = len(calls) * (args.warmup + args.rounds * args.runs_per_round)
    with progress_bar("interleaved latency rounds", total) as advance:
        return interleaved_latency(calls, rounds=args.rounds, runs=args.runs_per_round, warmup=args.warmup,
                                   advance=advance)


def validation_top1(run: Path, files: dict[str, Path]) -> tuple[dict[str, float], int]:
    """Top-1 of every file on the run's validation split (the split QAT keeps its best epoch on)."""
    from edgecls.deploy.runtimes import open_model
    from edgecls.metrics import top1_accuracy
    from edgecls.training.run_context import load_run

    ctx = load_run(run, verbose=0)
    images, labels = ctx.val_images, ctx.val_labels
    return {name: top1_accuracy(labels, open_model(path, quiet=True).predict(images))
            for name, path in files.items()}, int(len(labels))


def measure(run: Path, files: dict[str, Path], data, args) -> tuple[list[dict], int]:
    records = edgecls.bench(list(files.values()), data=data, runtime="tflite", threads=1, runs=10, rounds=1,
                            parity=False)
    val, val_images = validation_top1(run, files)
    timed = latencies(files, args)
    rows = []
    by_path = {Path(r["model"]).resolve(): r for r in records}
    float_top1 = by_path[files["float32"].resolve()]["accuracy"]
    for name, path in files.items():
        r = by_path[path.resolve()]
        sizes = file_sizes(path)
        base, optimizer = split_of(name)
        rows.append({
            "variant": name,
            "base": base,
            "optimizer": optimizer,
            "label": LABELS[base] + (f" ({optimizer})" if optimizer else ""),
            "top1": r["accuracy"],
            "change_pt": (r["accuracy"] - float_top1) * 100,
            "val_top1": val[name],
            "val_change_pt": (val[name] - val["float32"]) * 100,
            "size_bytes": sizes["bytes"],
            "gzip_bytes": sizes["gzip_bytes"],
            "latency_p50_ms": timed[name]["median_ms"],
            "round_p50s_ms": timed[name]["round_medians_ms"],
            "images": r["images"],
        })
    fp32_ms = rows[0]["latency_p50_ms"]
    for row in rows:
        row["latency_vs_float32"] = row["latency_p50_ms"] / fp32_ms
    return rows, val_images


def validation_choice(rows: list[dict]) -> dict | None:
    """The optimizer whose fine-tuned variants score the better mean validation top-1 (never test)."""
    tuned = {}
    for row in rows:
        if row.get("optimizer") and row.get("val_top1") is not None:
            tuned.setdefault(row["optimizer"], {})[row["base"]] = row["val_top1"]
    shared = set.intersection(*(set(v) for v in tuned.values())) if len(tuned) > 1 else set()
    if not shared:
        return None
    means = {o: sum(v[b] for b in shared) / len(shared) for o, v in tuned.items()}
    best = max(means.values())
    leaders = [o for o, mean in means.items() if mean == best]
    return {"variants": sorted(shared), "mean_val_top1": means, "better": leaders[0] if len(leaders) == 1 else None}


def describe(run: Path) -> dict:
    from edgecls.config import load_run_config

    config = load_run_config(run)
    folder = RunFolder(run)
    metrics = json.loads(folder.metrics.read_text())
    return {"run": run.name, "arch": config.model.arch, "alpha": config.model.alpha,
            "img_size": config.data.img_size, "epochs": metrics.get("epochs_run"),
            "train_seconds": metrics.get("train_seconds"), "optimizer": config.train.optimizer,
            "lr": config.train.lr, "trained": time.strftime("%Y-%m-%d", time.gmtime(folder.metrics.stat().st_mtime))}


def cpu() -> dict:
    """The CPU model and the vector-instruction flags TFLite's kernels pick from (the probe's flags)."""
    described = host_description()
    vector = [f for f in described["cpu_flags"] if f.startswith(("avx", "fma", "f16c", "sse4", "amx")) or "vnni" in f]
    return {"cpu": described["cpu"], "cores": described["cores"], "vector_flags": vector}


def previous_entry(out: Path, run_name: str) -> dict:
    path = out / "cifar10_variants.json"
    models = json.loads(path.read_text()).get("models", []) if path.is_file() else []
    return next((m for m in models if m["run"] == run_name), {})


def write_results(out: Path, entries: list[dict]) -> dict:
    path = out / "cifar10_variants.json"
    previous = json.loads(path.read_text()) if path.is_file() else {}
    # Rows kept from an earlier measurement keep that measurement's date and machine.
    by_run = {e["run"]: {**file_level(previous), **e} for e in previous.get("models", [])}
    by_run.update({e["run"]: e for e in entries})
    result = {"benchmark": "cifar10_variants",
              "machine": {**machine_info(), "cpus": os.cpu_count(), "load_at_end": os.getloadavg()},
              "versions": tool_versions(), "date": time.strftime("%Y-%m-%d"), "models": list(by_run.values())}
    return save_results(out, result)


def file_level(result: dict) -> dict:
    """The date and CPU of a results file, for entries written before each entry had its own."""
    machine = result.get("machine", {})
    return {"date": result.get("date"), "machine": {"cpu": machine.get("cpu"), "cores": machine.get("cpus")}}


def save_results(out: Path, result: dict) -> dict:
    """OUT/cifar10_variants.json and the table written from it."""
    from edgecls.fsutil import write_json, write_text

    write_json(out / "cifar10_variants.json", result)
    write_text(out / "cifar10_variants.md", markdown(result))
    return result


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = ["# CIFAR-10: one trained model, every optimization", "",
             f"Last run on {m.get('cpu')} ({m.get('cpus')} cores), no GPU; each model's heading says when and on "
             "which CPU it was measured (rows measured on different CPUs do not compare in speed). TFLite, "
             "1 thread, batch 1: latency is the median of per-round p50s over interleaved rounds "
             "(every file of a model timed in turn in each round, bare `invoke()` loop). Top-1 on the "
             "10,000 CIFAR-10 test images, measured through `edgecls bench`, and on the run's validation split "
             "(what choices are made on; QAT also keeps its best epoch on it, which flatters its validation "
             "figure a little). Fine-tuned rows say which `--fine-tune-optimizer` made them: `adam` (Adam, "
             "1e-4) or `recipe` (the run's own training optimizer at the rate its schedule ended at).", ""]
    for entry in result["models"]:
        lines += model_section({**file_level(result), **entry})
    return "\n".join(lines) + "\n"


def model_section(entry: dict) -> list[str]:
    d = entry["model"]
    trained = f", trained {d['trained']}" if d.get("trained") else ""
    lines = [f"## {d['arch']} α{d['alpha']:g}, {d['img_size']} px, {d['epochs']} epochs "
             f"({(d['train_seconds'] or 0) / 60:.1f} min of training{trained}), measured {entry.get('date')}", "",
             f"Measured on {_machine(entry.get('machine', {}))}.", "",
             "| variant | val top-1 | test top-1 | test vs float | size | gzip | p50 latency | vs fp32 |",
             "|---|---|---|---|---|---|---|---|"]
    for r in entry["rows"]:
        val = f"{r['val_top1']:.2%}" if r.get("val_top1") is not None else "–"
        lines.append(f"| {r['label']} | {val} | {r['top1']:.2%} | {r['change_pt']:+.2f} pt | "
                     f"{r['size_bytes'] / 1024:,.0f} KB | {r['gzip_bytes'] / 1024:,.0f} KB | "
                     f"{r['latency_p50_ms']:.3f} ms | {r['latency_vs_float32']:.2f}× |")
    lines.append("")
    if "tuned" in entry.get("extra", {}):
        lines += side_by_side(entry)
    else:  # measured before the optimizer was a choice: Adam at the lr the entry names
        extra = entry.get("extra", {})
        pruning = extra.get("pruning", {})
        lines += [f"Pruning reached {pruning.get('overall_sparsity', 0):.1%} overall sparsity "
                  f"(Keras top-1 {pruning.get('keras_top1', 0):.2%} before int8). "
                  f"QAT fine-tuned for {entry.get('qat_epochs')} epoch(s) at Adam lr {entry.get('qat_lr', 1e-4):g}"
                  f"{_qat_kept(extra.get('qat', {}))}, pruning for {entry.get('prune_epochs')} epoch(s) "
                  "(before the fine-tuning optimizer was a choice, so Adam only; no validation column).", ""]
    return lines


def side_by_side(entry: dict) -> list[str]:
    tuned = entry["extra"]["tuned"]
    optimizers = list(tuned)
    rows = {(r["base"], r["optimizer"]): r for r in entry["rows"] if r.get("optimizer")}
    lines = []
    if len(optimizers) > 1:
        head = " | ".join([*(f"val {o}" for o in optimizers), *(f"test {o}" for o in optimizers)])
        lines += [f"Fine-tuned variants side by side ({entry.get('qat_epochs')} QAT epoch(s), "
                  f"{entry.get('prune_epochs')} pruning epoch(s)):", "",
                  f"| variant | {head} |", "|---|" + "---|" * (2 * len(optimizers))]
        for base in FINE_TUNED:
            if not all((base, o) in rows for o in optimizers):
                continue
            cells = [f"{rows[(base, o)]['val_top1']:.2%}" for o in optimizers]
            cells += [f"{rows[(base, o)]['top1']:.2%}" for o in optimizers]
            lines.append(f"| {LABELS[base]} | {' | '.join(cells)} |")
        lines.append("")
    for optimizer, made in tuned.items():
        qat, pruning = made.get("qat", {}), made.get("pruning", {})
        lines.append(f"- `{optimizer}`: QAT with {qat.get('optimizer_class', '?')} at lr {qat.get('lr', 0):g}"
                     f"{_qat_kept(qat)}; pruning with {pruning.get('optimizer_class', '?')} at lr "
                     f"{pruning.get('lr', 0):g} reached {pruning.get('overall_sparsity', 0):.1%} overall sparsity "
                     f"(Keras top-1 {pruning.get('keras_top1', 0):.2%} before int8); fine-tuning took "
                     + ", ".join(f"{k} {v:.0f} s" for k, v in made.get("seconds", {}).items()) + ".")
    choice = entry.get("validation_choice")
    if choice:
        means = ", ".join(f"{o} {v:.2%}" for o, v in choice["mean_val_top1"].items())
        verdict = f"**{choice['better']}** fine-tunes better" if choice["better"] else "neither fine-tunes better"
        lines += ["", f"On validation (mean top-1 of {', '.join(choice['variants'])}: {means}) {verdict}; "
                      f"edgecls' default `--fine-tune-optimizer` was `{entry.get('default_optimizer')}` when this "
                      "was measured."]
    return [*lines, ""]


def _machine(machine: dict) -> str:
    flags = machine.get("vector_flags")
    return (f"{machine.get('cpu')} ({machine.get('cores')} cores"
            + (f"; vector flags {' '.join(flags)})" if flags else ")"))


def _qat_kept(qat: dict) -> str:
    if "kept_epoch" not in qat:
        return ""
    history = " → ".join(f"{a:.2%}" for a in qat.get("val_accuracy_by_epoch", []))
    kept = "the calibrated start (epoch 0)" if qat["kept_epoch"] == 0 else f"epoch {qat['kept_epoch']}"
    return f"; it kept {kept}, best on validation ({history})"


def render_only(args) -> int:
    result = json.loads((args.out / "cifar10_variants.json").read_text())
    print(markdown(save_results(args.out, result)))
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.render_only:
        return render_only(args)
    entries = []
    for run in args.runs:
        made = {"qat_epochs": args.qat_epochs, "prune_epochs": args.prune_epochs, "lr": args.lr,
                "optimizers": list(args.optimizers), "default_optimizer": DEFAULT_OPTIMIZER}
        if args.measure_only:  # files made earlier, with the settings given again on this command line
            files = existing_variants(run, args.optimizers)
            made["extra"] = previous_entry(args.out, run.name).get("extra", {})
        else:
            files, made["extra"] = make_variants(run, args)
        rows, val_images = measure(run, files, args.data, args)
        entries.append({"run": run.name, "model": describe(run), "date": time.strftime("%Y-%m-%d"), "machine": cpu(),
                        "val_images": val_images, "rows": rows, "validation_choice": validation_choice(rows),
                        **made})
    print(markdown(write_results(args.out, entries)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
