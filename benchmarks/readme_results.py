"""The README's "Measured results" table, written from benchmarks/results: one short row per result.

    python benchmarks/readme_results.py           # rewrites the block between the markers in README.md
    python benchmarks/readme_results.py --check   # exit 1, and say so, when README.md's block is stale

Every ``benchmarks/results/**/*.json`` gets a row (what, headline figures, the machine and date the
file records, a link to its .md); a results file with no row here is an error, so a new benchmark
cannot stay out of the README, and a figure in the table always has a file behind it. The long
explanations live in each .md, written by the benchmark's own script. Reads JSON only: no
TensorFlow, no edgecls, so the default test suite can check the block quickly.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
BEGIN = "<!-- measured-results: written by python benchmarks/readme_results.py, do not edit by hand -->"
END = "<!-- /measured-results -->"
BEGIN_CPU = "<!-- int8-by-cpu: written by python benchmarks/readme_results.py, do not edit by hand -->"
END_CPU = "<!-- /int8-by-cpu -->"
# Pieces of another result (optimize_cifar10.json names its leaderboards), not results of their own.
PARTS = ("optimize_cifar10/*/leaderboard.json",)
# The trials tables cifar10_trials.py writes for a recipe, linked beside its results.md.
TRIALS = {"cifar10_whitened_cnn": "trials_whitened_cnn.md", "cifar10_resnet9": "trials.md"}


class ResultsError(Exception):
    """A results file the README cannot describe (no row for it, or a missing marker)."""


def pct(x: float) -> str:
    return f"{x:.2%}".replace("%", " %")


def pt(x: float) -> str:
    return f"{x:+.2f} pt"


def kb(size_bytes: float) -> str:
    return f"{size_bytes / 1024:,.0f} KB"


# --- headlines: (what, result[, more .md beside the file's own]) rows from one results file ----------


def cifar10(r: dict) -> Iterator[tuple]:
    runs = sorted(r["runs"], key=lambda run: run["recipe"] != r.get("reference_recipe"))
    for run in runs:
        budget = run.get("budget")
        spent = f"{run['train_seconds'] / 60:.1f} min of training"
        if budget:
            spent += (f" ({'within' if run['within_budget'] else 'OVER'} the budget of "
                      f"{budget['budget_seconds'] / 60:.1f} min measured here)")
        tta = run.get("tta")
        yield (f"CIFAR-10, `{run['recipe']}` ({run['arch']} α{run['alpha']:g}, {run['img_size']} px, "
               f"{run['epochs']} epochs, {run.get('precision', 'float32')})",
               f"**int8 TFLite {pct(run['int8_accuracy'])}** (float {pct(run['float_accuracy'])}) on "
               f"{run['test_images']:,} test images; {spent}; int8 {kb(run['int8_size_bytes'])}, "
               f"{run['int8_latency_ms']:.3f} ms per image"
               + (f"; int8 with TTA×{len(tta['views'])} {pct(tta['int8']['tta_accuracy'])}" if tta else ""),
               [TRIALS[run["recipe"]]] if run["recipe"] in TRIALS else [])


def airbench(r: dict) -> Iterator[tuple[str, str]]:
    parts = [f"{row['variant']} {row['epochs']:g} epochs ({row['train_seconds'] / 60:.1f} min): "
             f"{pct(row['test_top1'])} (TTA {pct(row['test_top1_tta'])})" for row in r["rows"]]
    yield "airbench94 in PyTorch on the same CIFAR-10 files (issue 15)", "test top-1: " + "; ".join(parts)


def tfdata_autotune(r: dict) -> Iterator[tuple[str, str]]:
    def cells(mode: str) -> str:
        lifetimes = next(v for k, v in r["modes"].items() if k.startswith(mode))["lifetimes"].values()
        shares = sorted({f"{cell['waited_share']:.0%}".replace("%", " %") for cell in lifetimes})
        return (f"{'–'.join(dict.fromkeys([shares[0], shares[-1]]))} of closes waited (up to "
                f"{max(cell['max_wait_s'] for cell in lifetimes):.2f} s)")

    rate = {k.split(" (")[0]: v["median_batches_per_s"] for k, v in r["modes"].items()}
    yield ("tf.data autotuning and the wait when an iterator closes",
           f"autotune on (tf.data's default): {cells('autotune on')}; off, as edgecls runs: {cells('autotune off')}; "
           "throughput " + " vs ".join(f"{v:.1f} ({k})" for k, v in rate.items()) + " batches/s")


def _variant_rows(model: dict) -> dict:
    return {row["variant"]: row for row in model["rows"]}


def cifar10_variants(r: dict) -> Iterator[tuple[str, str]]:
    for model in r["models"]:
        m, rows = model["model"], _variant_rows(model)
        parts = [f"{rows[v]['label']} {pct(rows[v]['top1'])} ({pt(rows[v]['change_pt'])}, "
                 f"{rows[v]['latency_vs_float32']:.2f}× fp32 latency, gzip {kb(rows[v]['gzip_bytes'])})"
                 for v in ("int8", "qat_int8", "qat_int8_adam", "qat_int8_recipe", "pruned_int8", "pruned_int8_adam",
                           "pruned_int8_recipe") if v in rows]
        # Models are rerun one at a time: each says where and when it was measured.
        yield (f"every optimization of one CIFAR-10 model: {m['arch']} α{m['alpha']:g}, {m['img_size']} px",
               f"float {pct(rows['float32']['top1'])}, gzip {kb(rows['float32']['gzip_bytes'])}; " + "; ".join(parts),
               [], machine_and_date(model) if model.get("machine") else None)


def optimize_cifar10(r: dict) -> Iterator[tuple[str, str]]:
    parts = []
    for run in r["runs"]:
        c = run["chosen"]
        parts.append(f"{run['run']}: {c['variant']} {pct(c['test_accuracy'])} (float {pct(run['float_test_accuracy'])}), "
                     f"{c['side_by_side_vs_float32']:.2f}× fp32, {c['side_by_side_vs_hand_picked']:.2f}× the "
                     f"hand-picked, {run['search_seconds'] / 60:.1f} min")
    met = sum(all(run["goals"].values()) for run in r["runs"])
    yield (f"`edgecls optimize --max-drop {r['max_drop_pt']:g}` on CIFAR-10",
           f"{met} of {len(r['runs'])} runs meet every goal; " + "; ".join(parts))


def insight_cifar10(r: dict) -> Iterator[tuple[str, str]]:
    g = r["gains"]
    members = [row for row in r["rows"] if row["kind"] == "member"]
    tta = "; ".join(f"{row['name']} {pct(row['accuracy'])} → {pct(row['tta_accuracy'])}" for row in members)
    yield (f"test-time augmentation and ensembles, CIFAR-10: {' + '.join(row['name'] for row in members)}",
           f"TTA×{r['tta']['count']}: {tta}; the ensemble {pt(100 * g['ensemble_over_best_single'])} over the "
           f"better model ({g['best_single']}), {pt(100 * g['ensemble_tta_over_best_single'])} with TTA")


def soak(r: dict) -> Iterator[tuple[str, str]]:
    parts = [f"{row['growth_pct']:+.2f} % {row['model']} ({row['mode']})" for row in r["rows"]]
    ok = all(r["checks"].values())
    yield (f"memory soak: {r['predictions']:,} predictions per model in one process",
           f"RSS growth after warm-up: {', '.join(parts)}; {'every' if ok else 'NOT every'} model under "
           f"{r['limit_pct']:g} %")


def demo(r: dict) -> Iterator[tuple[str, str]]:
    stages = {s["stage"]: s for s in r["stages"]}
    scored = [s for s in r["stages"] if s["top1"] is not None and s["latency_ms"] is not None]
    top1 = {pct(s["top1"]) for s in scored}
    accuracy = (f"all at {top1.pop()}" if len(top1) == 1
                else ", ".join(f"{s['stage']} {pct(s['top1'])}" for s in scored))
    i8, f32 = stages.get("TFLite int8"), stages.get("TFLite float32")
    speed = (f"; int8 {i8['latency_ms']:.3f} ms vs fp32 TFLite {f32['latency_ms']:.3f} ms, "
             f"{kb(i8['size_bytes'])} vs {kb(f32['size_bytes'])}") if i8 and f32 else ""
    pi = [s for s in r["stages"] if s["stage"].startswith("pi_infer.py")]
    yield ("offline demo on the digits (`edgecls demo`, first run)",
           f"{r['seconds']:.0f} s end to end ({r['train_seconds']:.0f} s training); on the {r['test_images']} test "
           f"images {accuracy}{speed}; optimize chose "
           + (f"{r.get('chosen_variant') or r['chosen']}" if r["chosen"] else "nothing within the budget")
           + (f"; the bundle's {pi[0]['stage']}" if pi else ""))


def cifar10_mini(r: dict) -> Iterator[tuple[str, str]]:
    for run in r["runs"]:
        yield (f"cifar10-mini, `{run['recipe']}` ({run['arch']}, {run['img_size']} px)",
               f"test top-1 {pct(run['test_top1'])} ({run['test_images']} images), {run['train_seconds']:.0f} s "
               f"of training, {run['epochs']} epochs")


def int8_speed(r: dict) -> Iterator[tuple[str, str]]:
    rows = [row for row in r["rows"] if not row.get("test_only")]
    ratios = ", ".join(f"{row['arch']} {row['int8_vs_reference']:.2f}×" for row in rows)
    partitions = sorted({row["int8_partitions"] for row in rows})
    naive = [f"{row['arch']} {row['naive_int8_partitions']}" for row in rows
             if (row.get("naive_int8_partitions") or 1) > 1]
    yield ("int8 vs float, every architecture at 224 px (random weights)",
           f"edgecls int8 / stock fp32: {ratios}; edgecls int8 in {'/'.join(map(str, partitions))} XNNPACK "
           f"partition(s)" + (f", stock int8 in {', '.join(naive)}" if naive else ""))


def int8_profile(r: dict) -> Iterator[tuple[str, str]]:
    s = r["headline"]
    med = s["median_ms"]
    yield ("where MobileNetV3-Small-224's time goes (LiteRT per-op profile)",
           f"edgecls int8 **{s['int8_vs_stock_fp32']:.2f}×** stock fp32 ({med['edgecls_int8']:.3f} vs "
           f"{med['stock_fp32']:.3f} ms; converted as built {med['edgecls_int8_as_built'] / med['stock_fp32']:.2f}×), "
           f"{s['int8_xnnpack_partitions']} XNNPACK partition")


def runtime_overhead(r: dict) -> Iterator[tuple[str, str]]:
    t = r["tflite"]
    yield (f"runtime overhead, {r['arch']} {r['img_size']} px",
           "bench p50 / bare `invoke()`: " + ", ".join(f"{k} {v['bench_over_bare']:.2f}×" for k, v in t.items())
           + "; faster per image than `Model.predict`: "
           + ", ".join(f"{k} {v['keras_predict_over_bench']:.0f}×" for k, v in t.items()))


def pi_emulation(r: dict) -> Iterator[tuple[str, str]]:
    stacks = r["stacks"].values()
    parts = [f"{s['stack']}: **failed** ({s['error']})" if "error" in s else
             f"{s['stack']}: {'same top-1 as the host' if s['same_top1_as_host'] else '**top-1 differs from the host**'} "
             f"on {s['images']} images" for s in stacks]
    yield ("the bundle's `pi_infer.py` under aarch64 emulation (correctness, not Pi latency)", "; ".join(parts))


def device_loop(r: dict) -> Iterator[tuple[str, str]]:
    where = "an emulated Pi 4 (kernel choice, not Pi speed)" if r.get("emulated") else r["device_check"]["device"]
    parts = []
    for run in r["runs"]:
        int8 = next((c for c in run["candidates"] if c["variant"] == "int8"), None)
        ratios = (f"; int8 {int8['host_vs_float32']:.2f}× fp32 on the host, {int8['device_vs_float32']:.2f}× there"
                  if int8 and int8["host_vs_float32"] and int8["device_vs_float32"] else "")
        parts.append(f"{run['run']}: {run['host_choice'] or 'nothing'} with host timings, "
                     f"{run['device_choice'] or 'nothing'} with the device's{ratios}")
    differ = sum(run["host_choice"] != run["device_choice"] for run in r["runs"])
    yield (f"`edgecls optimize` timed on the host vs `--device` on {where}",
           f"the choice differs on {differ} of {len(r['runs'])} runs; " + "; ".join(parts))


def parity_cifar10(r: dict) -> Iterator[tuple[str, str]]:
    every = [p for run in r["runs"] for p in run["pairs"] + [q for d in run["devices"] for q in d["pairs"]]]
    same = [p for p in every if p["a"]["model"] == p["b"]["model"] and p["a"]["runtime"] != p["b"]["runtime"]]
    runtimes = sorted({side["runtime"] for p in every for side in (p["a"], p["b"])})
    least = min(every, key=lambda p: p["agreement"])
    text = (f"{len(every)} pairs over {len(r['runs'])} runs, {r['images_per_run']} test images each "
            f"({', '.join(runtimes)}); one file in two runtimes: top-1 agreement ≥ "
            f"{pct(min(p['agreement'] for p in same))}, max |Δp| {max(p['max_abs_dp'] for p in same):.1e}; "
            f"least of any pair {pct(least['agreement'])} ({least['a']['model']} · {least['a']['runtime']} vs "
            f"{least['b']['model']} · {least['b']['runtime']})") if same else f"{len(every)} pairs"
    yield ("one parity table across runtimes (`bench --parity`, CIFAR-10)", text)


def search_cifar10(r: dict) -> Iterator[tuple]:
    recipe, timed = r["recipe"], r["side_by_side"]
    base = timed["recipe int8"]["median_ms"]
    parts = []
    for name, best in r["picks"].items():
        row = timed.get(f"pick under {name}")
        if best is None or row is None:
            parts.append(f"under {name} the limit: nothing")
            continue
        gain = 100 * (best["test_accuracy"] - recipe["test_accuracy"])
        parts.append(f"under {name}: {best['config']['key']} {best['variant']} test {pct(best['test_accuracy'])} "
                     f"({gain:+.2f} pt) at {row['median_ms'] / base:.2f}× its latency")
    s = r["search"]
    yield (f"`edgecls search` on CIFAR-10 against the `{recipe['name']}` recipe's int8 "
           f"({pct(recipe['test_accuracy'])} test, {base:.3f} ms, the limit)",
           "; ".join(parts) + f"; {len(s['trials'])} trials in {r['budget']['budget_seconds'] / 60:.0f} min of search "
           f"budget (chosen on validation, test reported)", ["pareto.png"])


@dataclass(frozen=True)
class Source:
    """One results file: the script that writes it and how its rows read."""

    path: str  # under benchmarks/results
    script: str
    rows: Callable[[dict], Iterator[tuple]]
    md: str | None = None  # default: the .json's own name with .md


SOURCES = (
    Source("cifar10/results.json", "cifar10.py", cifar10),
    Source("cifar10/airbench_reference.json", "airbench_reference.py", airbench),
    Source("cifar10_variants.json", "cifar10_variants.py", cifar10_variants),
    Source("optimize_cifar10/optimize_cifar10.json", "optimize_cifar10.py", optimize_cifar10),
    Source("insight_cifar10/insight_cifar10.json", "insight_cifar10.py", insight_cifar10),
    Source("insight_cifar10_resnet9_mobilenet/insight_cifar10.json", "insight_cifar10.py", insight_cifar10),
    Source("tfdata_autotune/tfdata_autotune.json", "tfdata_autotune.py", tfdata_autotune),
    Source("int8_speed.json", "int8_speed.py", int8_speed),
    Source("int8_profile.json", "int8_profile.py", int8_profile),
    Source("runtime_overhead.json", "runtime_overhead.py", runtime_overhead),
    Source("soak.json", "soak.py", soak),
    Source("pi_emulation.json", "pi_emulation.py", pi_emulation),
    Source("device_loop.json", "device_loop.py", device_loop),
    Source("parity_cifar10.json", "parity_cifar10.py", parity_cifar10),
    Source("search_cifar10/search_cifar10.json", "search_cifar10.py", search_cifar10),
    Source("demo.json", "demo.py", demo),
    Source("cifar10_mini/cifar10_mini.json", "cifar10_mini.py", cifar10_mini),
)


def int8_kernels(m: dict) -> str:
    """The instruction sets that decide int8 speed, as the file's machine record names them."""
    features = m.get("features")
    if not isinstance(features, dict):
        return "ISA flags not recorded"
    fast = [name for name in ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm") if features.get(name)]
    if fast:
        return " ".join(fast)
    return "AVX2, no VNNI" if features.get("avx2") else ("NEON, no dot product" if features.get("asimd") else "no SIMD found")


def machine_and_date(r: dict) -> str:
    """The CPU, core count and date the file records (or its rows do); says so where it records none."""
    m = r.get("machine")
    if isinstance(m, dict) and m.get("cpu"):
        cores = m.get("cpus") or m.get("cores")
        machine = f"{m['cpu']}, {cores} cores" if cores else m["cpu"]
        machine += f", {int8_kernels(m)}"
    else:
        cpus = sorted({row["cpu"] for row in r.get("rows", []) if row.get("cpu")})
        machine = ", ".join(cpus) if cpus else "machine not recorded"
    dates = sorted({str(row["date"])[:10] for row in r.get("rows", []) if row.get("date")})
    if r.get("date"):
        date = str(r["date"])[:10]
    elif dates:
        date = "–".join(dict.fromkeys([dates[0], dates[-1]])) + (" (some rows undated)" if any(
            not row.get("date") for row in r["rows"]) else "")
    else:
        date = "date not recorded"
    return f"{machine}; {date}"


def _links(source: Source, more: list[str], results: Path) -> str:
    md = PurePosixPath(source.md or PurePosixPath(source.path).with_suffix(".md").as_posix())
    rel = results.relative_to(ROOT).as_posix() if results.is_relative_to(ROOT) else results.as_posix()
    links = [f"[{name}]({rel}/{md.parent / name})" if (results / md.parent / name).is_file()
             else f"no {name}" for name in (md.name, *more)]
    return ", ".join(links) + f"; `benchmarks/{source.script}`"


def _unlisted(results: Path) -> list[str]:
    known = {s.path for s in SOURCES}
    found = sorted(p.relative_to(results).as_posix() for p in results.rglob("*.json"))
    return [p for p in found if p not in known and not any(PurePosixPath(p).match(part) for part in PARTS)]


def block(results: Path = RESULTS) -> str:
    """The Markdown between the markers, from every results file under ``results``."""
    unlisted = _unlisted(results)
    if unlisted:
        raise ResultsError(f"no README row for {', '.join(unlisted)}: add a Source to benchmarks/readme_results.py")
    lines = ["| what | result | machine; date | details |", "|---|---|---|---|"]
    for source in SOURCES:
        path = results / source.path
        if not path.is_file():
            continue
        r = json.loads(path.read_text())
        where = machine_and_date(r)
        for what, result, *more in source.rows(r):
            links = _links(source, more[0] if more else [], results)
            lines.append(f"| {what} | {result} | {more[1] if len(more) > 1 and more[1] else where} | {links} |")
    return "\n".join(lines)


def int8_by_cpu(results: Path = RESULTS) -> str:
    """int8's latency over float32's on each CPU a results file timed both on: the figures behind "it depends"."""
    lines = ["| CPU (int8 kernels) | model | int8 / fp32 latency | from |", "|---|---|---|---|"]
    profile = results / "int8_profile.json"
    if profile.is_file():
        r = json.loads(profile.read_text())
        m, ms = r["machine"], r["headline"]["median_ms"]
        lines.append(f"| {m['cpu']} ({int8_kernels(m)}) | MobileNetV3-Small-224, edgecls int8 vs stock fp32 | "
                     f"{ms['edgecls_int8'] / ms['stock_fp32']:.2f}× | [int8_profile.md](benchmarks/results/int8_profile.md) |")
    loop = results / "device_loop.json"
    if loop.is_file():
        r = json.loads(loop.read_text())
        for side in ("host", "device"):
            for run in r["runs"]:
                int8 = next((c for c in run["candidates"] if c["variant"] == "int8"), None)
                if not int8 or int8[f"{side}_vs_float32"] is None:
                    continue
                where = run[f"{side}_where"]
                cpu = f"{where.get('cpu')} ({where_kernels(where)})"
                if side == "device" and r.get("emulated"):
                    cpu = f"emulated {cpu}: kernel choice, not speed"
                lines.append(f"| {cpu} | {run['run']}, int8 vs its fp32 | {int8[f'{side}_vs_float32']:.2f}× | "
                             "[device_loop.md](benchmarks/results/device_loop.md) |")
    lines.append("")
    if not any("AVX2, no VNNI" in line for line in lines):
        lines.append("No AVX2-only x86 CPU (int8 without dot products) was among the machines these benchmarks ran on.")
    emulation = results / "pi_emulation.json"
    if emulation.is_file():
        stacks = json.loads(emulation.read_text())["stacks"].values()
        lines.append("Top-1 on the emulated Cortex-A72, same int8 file and images as the host: " + "; ".join(
            f"{s['stack']}: " + ("failed" if "error" in s else
                                 f"{'the same' if s['same_top1_as_host'] else '**different**'} on {s['images']} images")
            for s in stacks) + " ([pi_emulation.md](benchmarks/results/pi_emulation.md)).")
    return "\n".join(lines)


def where_kernels(where: dict) -> str:
    flags = set(where.get("cpu_flags") or [])
    return int8_kernels({"features": {name: name in flags for name in
                                      ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm", "avx2", "asimd")}})


def rewritten(readme: str, table: str, begin: str = BEGIN, end_marker: str = END) -> str:
    """``readme`` with the text between the markers replaced by ``table``."""
    start, end = readme.find(begin), readme.find(end_marker)
    if start < 0 or end < start:
        raise ResultsError(f"README.md lacks the markers {begin!r} … {end_marker!r}")
    return readme[:start + len(begin)] + "\n" + table + "\n" + readme[end:]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 when README.md is stale")
    parser.add_argument("--readme", type=Path, default=README)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    try:
        text = args.readme.read_text()
        new = rewritten(rewritten(text, block(args.results)), int8_by_cpu(args.results), BEGIN_CPU, END_CPU)
    except ResultsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.check:
        if new != text:
            print(f"{args.readme} is stale: run python benchmarks/readme_results.py", file=sys.stderr)
            return 1
        return 0
    if new != text:
        tmp = args.readme.with_name(f".{args.readme.name}.tmp")
        tmp.write_text(new)
        tmp.replace(args.readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())
