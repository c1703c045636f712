"""Where does MobileNetV3-Small's time go? Per-op times of stock fp32 and edgecls int8 under XNNPACK.

    python benchmarks/int8_profile.py [--size 224] [--runs 400] [--rounds 7] [--attempt NAME --note TEXT]

Stock fp32 and edgecls int8 as benchmarks/int8_speed.py builds them (random weights, BatchNorm
statistics from 24 smooth synthetic images, int8 calibrated on 24 more), with edgecls int8 converted
from the graph as built (``speed_rewrites=False``: without edgecls.converters.speed_rewrites), as it
was converted before its uint8<->int8 ends went through float (``delegable_io=False``) and edgecls
fp32 beside them; 1 thread, batch 1:
  * per-op times from LiteRT's own profiler (benchmarks/litert_op_profile.py: the C API of the
    wheel's libLiteRt.so, a CompiledModel on XNNPACK with profiling on): ``--runs`` runs per model
    in 8 chunks, the models' chunks interleaved, each op's median over the chunks of its mean.
    Rows are XNNPACK's operators, which are not TFLite's: XNNPACK fuses a scalar MUL+ADD or
    x * relu6(x + 3) into one unary op and runs 1x1 convolutions as GEMMs. Ops it does not take
    (a builtin QUANTIZE) are TFLite rows. Blocks are assigned by the op sequence (one depthwise
    convolution per inverted-residual block);
  * the headline latency from ``Interpreter.invoke`` (what edgecls deploys), all models timed
    side by side in one process, interleaved rounds, median of the round medians.
``--attempt NAME --note TEXT`` adds this run's headline to the attempts table kept in the JSON,
so every speed-up tried is measured the same way and stays listed, good or bad.
Writes benchmarks/results/int8_profile.json and .md.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from int8_speed import calibrate_batchnorm, machine, smooth_images, stock_model  # noqa: E402
from litert_op_profile import OpProfiler  # noqa: E402
from machine_record import text as machine_text  # noqa: E402

from edgecls.converters.tflite_convert import convert  # noqa: E402
from edgecls.converters.tflite_inspect import inspect_tflite  # noqa: E402
from edgecls.deploy.litert import ready_invoke  # noqa: E402
from edgecls.models.modeling import build_model  # noqa: E402
from edgecls.tf import keras  # noqa: E402
from edgecls.timing import interleaved_latency  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
ARCH = "mobilenet_v3_small"
MODELS = {"stock_fp32": "stock Keras MobileNetV3Small, fp32", "edgecls_int8": "edgecls mobilenet_v3_small, int8",
          "edgecls_int8_as_built": "edgecls int8 from the graph as built (no speed rewrites)",
          "edgecls_int8_builtin_input": "edgecls int8, input QUANTIZE left to TFLite (before the split)",
          "edgecls_fp32": "edgecls mobilenet_v3_small, fp32"}


def build_blobs(size: int) -> dict[str, bytes]:
    images = smooth_images(48, size)
    ours = build_model(ARCH, size, 10)
    calibrate_batchnorm(ours, images[:24])
    stock = stock_model(ARCH, size)
    calibrate_batchnorm(stock, images[:24])
    # The stock model is converted as Keras built it: the reference users have today
    blobs = {"stock_fp32": convert(stock, "float32", speed_rewrites=False),
             "edgecls_int8": convert(ours, "int8", calibration=images[24:]),
             "edgecls_int8_as_built": convert(ours, "int8", calibration=images[24:], speed_rewrites=False),
             "edgecls_int8_builtin_input": convert(ours, "int8", calibration=images[24:], delegable_io=False),
             "edgecls_fp32": convert(ours, "float32")}
    keras.backend.clear_session()
    return blobs


def op_type(name: str) -> str:
    """XNNPACK's operator name without its data types: fp32 and int8 rows then compare."""
    if name == "Invalid Unary Op":  # XNNPACK's name for its fused unary ops (scale+shift, hard-swish, ...)
        return "Unary (scale/shift, hard-swish)"
    if name.startswith("Mean"):  # fp32 reports "Mean (ND) Reduce2", int8 "Mean (ND) Reduce"
        return "Mean"
    return re.sub(r"\s+", " ", re.sub(r"\([^)]*\)", "", name)).strip()


def assign_blocks(ops: list[dict]) -> None:
    """Label every op with its part of the network: stem, block0..block10, head.

    Each inverted-residual block has one depthwise convolution. Ops before it (expand GEMM and its
    activation) belong to it; after it come the activation, the squeeze-excite (a Mean, then two
    GEMMs on the pooled vector and the gating multiply) and the projection GEMM, then the residual
    Add if the block has one. Everything after the last projection is the head.
    """
    depthwise = [i for i, op in enumerate(ops) if "DWConv" in op["name"]]
    ends = []
    for start in depthwise:
        gemms_to_skip, i = 0, start + 1
        while i < len(ops):
            name = ops[i]["name"]
            if name.startswith("Mean"):
                gemms_to_skip = 2
            elif "GEMM" in name and "DWConv" not in name:
                if gemms_to_skip == 0:
                    break
                gemms_to_skip -= 1
            i += 1
        if i + 1 < len(ops) and ops[i + 1]["name"].startswith("Add"):
            i += 1
        ends.append(i)
    block = 0
    for i, op in enumerate(ops):
        # MobileNetV3-Small's block 0 has no expand convolution: all before its depthwise is the stem.
        if not depthwise or i < depthwise[0]:
            op["block"] = "stem"
        elif i > ends[-1]:
            op["block"] = "head"
        else:
            while i > ends[block]:
                block += 1
            op["block"] = f"block{block}"


def grouped(ops: list[dict], key) -> dict[str, dict]:
    groups: dict[str, dict] = defaultdict(lambda: {"us": 0.0, "ops": 0})
    for op in ops:
        group = groups[key(op)]
        group["us"] += op["mean_us"]
        group["ops"] += 1
    return dict(groups)


def profile_models(blobs: dict[str, bytes], runs: int, chunks: int = 8) -> dict[str, dict]:
    # Models one after another would each meet a different phase of the machine's drift (one such
    # run had the rewritten graph 42 µs slower and the next 79 µs faster): profile them in
    # interleaved chunks and keep each op's median over the chunks.
    profilers = {name: OpProfiler(blob, threads=1) for name, blob in blobs.items()}
    parts: dict[str, list] = {name: [] for name in blobs}
    for _ in range(chunks):
        for name, profiler in profilers.items():
            parts[name].append(profiler.profile(max(1, runs // chunks)))
    profiles = {}
    for name in blobs:
        result = median_of_chunks(parts[name])
        assign_blocks(result["ops"])
        for op in result["ops"]:
            op["type"] = op_type(op["name"]) if op["kind"] == "xnnpack" else f"TFLite {op['name']} (not in XNNPACK)"
        result["ops_total_us"] = sum(op["mean_us"] for op in result["ops"])
        result["by_type"] = grouped(result["ops"], lambda op: op["type"])
        result["by_block"] = grouped(result["ops"], lambda op: op["block"])
        profiles[name] = result
    return profiles


def median_of_chunks(parts: list[dict]) -> dict:
    """One profile from chunks of the same model: each op's median mean time over the chunks."""
    ops = [dict(op, mean_us=float(np.median([part["ops"][i]["mean_us"] for part in parts])))
           for i, op in enumerate(parts[0]["ops"])]
    return {"ops": ops, "run_mean_us": float(np.median([part["run_mean_us"] for part in parts])),
            "runs": sum(part["runs"] for part in parts), "chunks": len(parts)}


def headline(blobs: dict[str, bytes], rounds: int, runs: int) -> dict:
    calls = {name: ready_invoke(model_content=blob, threads=1, seed=1) for name, blob in blobs.items()}
    timed = interleaved_latency(calls, rounds=rounds, runs=runs, warmup=20)
    medians = {name: t["median_ms"] for name, t in timed.items()}
    info = inspect_tflite(blobs["edgecls_int8"])
    return {"median_ms": medians, "round_medians_ms": {n: t["round_medians_ms"] for n, t in timed.items()},
            "spread_pct": {n: t["spread_pct"] for n, t in timed.items()},
            "int8_vs_stock_fp32": medians["edgecls_int8"] / medians["stock_fp32"],
            "int8_xnnpack_partitions": info["xnnpack_partitions"], "int8_ops": info["ops"]}


def where_the_time_goes(profiles: dict[str, dict]) -> str:
    """A short paragraph from the numbers: the biggest op types and what int8 does to each."""
    fp32, int8 = profiles["stock_fp32"], profiles["edgecls_int8"]

    def top(profile, count=4):
        total = profile["ops_total_us"]
        ranked = sorted(profile["by_type"].items(), key=lambda kv: -kv[1]["us"])[:count]
        return ", ".join(f"{name} {g['us']:.0f} µs ({g['us'] / total:.0%})" for name, g in ranked)

    lines = [f"Stock fp32 spends its {fp32['ops_total_us']:.0f} µs on {top(fp32)}; edgecls int8 its "
             f"{int8['ops_total_us']:.0f} µs on {top(int8)}."]
    shared = sorted(set(fp32["by_type"]) & set(int8["by_type"]), key=lambda t: -fp32["by_type"][t]["us"])
    ratios = [f"{t} {int8['by_type'][t]['us'] / fp32['by_type'][t]['us']:.2f}×" for t in shared
              if fp32["by_type"][t]["us"] >= 5]
    lines.append("int8 / fp32 time per op type: " + ", ".join(ratios) + ".")
    built = profiles["edgecls_int8_as_built"]
    parts = ", ".join(f"{part} {built['by_block'][part]['us']:.0f} → {int8['by_block'][part]['us']:.0f} µs"
                      for part in ("stem", "block0", "block1") if part in built["by_block"] and part in int8["by_block"])
    lines.append(f"Converted from the graph as built (no speed rewrites) int8 took {built['ops_total_us']:.0f} µs; "
                 f"the rewritten graph {int8['ops_total_us'] - built['ops_total_us']:+.0f} µs ({parts}; the fused "
                 "convolution of block0's projection and block1's expansion is counted in block0).")
    before = profiles["edgecls_int8_builtin_input"]
    builtin = {t: g for t, g in before["by_type"].items() if t.startswith("TFLite")}
    if builtin:
        lines.append("As converted before (uint8→int8 QUANTIZE left to TFLite), the builtin kernels took " + ", ".join(
            f"{t} {g['us']:.1f} µs ({g['us'] / before['ops_total_us']:.0%} of {before['ops_total_us']:.0f} µs)"
            for t, g in builtin.items()) + ".")
    outside = {t: g for t, g in int8["by_type"].items() if t.startswith("TFLite")}
    if outside:
        lines.append("Outside XNNPACK (TFLite's builtin kernels): " + ", ".join(
            f"{t} {g['us']:.1f} µs ({g['us'] / int8['ops_total_us']:.0%})" for t, g in outside.items()) + ".")
    elementwise = sum(g["us"] for t, g in int8["by_type"].items()
                      if t.startswith(("Unary", "Multiply", "Add", "Mean")) or t.startswith("TFLite"))
    lines.append(f"Everything but the convolutions and GEMMs (elementwise, means, boundary quantization) is "
                 f"{elementwise:.0f} µs = {elementwise / int8['ops_total_us']:.0%} of int8, against "
                 f"{sum(g['us'] for t, g in fp32['by_type'].items() if t.startswith(('Unary', 'Multiply', 'Add', 'Mean'))):.0f} µs in fp32.")
    blocks = sorted(int8["by_block"].items(), key=lambda kv: -kv[1]["us"])[:3]
    lines.append("The costliest parts of int8: " + ", ".join(
        f"{b} {g['us']:.0f} µs (fp32 {fp32['by_block'].get(b, {'us': float('nan')})['us']:.0f} µs)" for b, g in blocks)
        + ".")
    return " ".join(lines)


def markdown(result: dict) -> str:
    h, profiles, m = result["headline"], result["profiles"], result["machine"]
    lines = [f"# MobileNetV3-Small-{result['size']}: where the time goes (1 thread, batch 1)", "",
             f"Machine: {machine_text(m)}; TensorFlow {m['tensorflow']}, ai-edge-litert "
             f"{m['ai_edge_litert']} (XNNPACK). Command: `{result['command']}` ({result['date']}).", "",
             result["method"], "",
             "## Headline (Interpreter.invoke, interleaved rounds, median of round medians)", "",
             "| model | median ms | round spread |", "|---|---:|---:|"]
    for name, label in MODELS.items():
        lines.append(f"| {label} | {h['median_ms'][name]:.3f} | {h['spread_pct'][name]:.0f} % |")
    lines += ["", f"**edgecls int8 / stock fp32 = {h['int8_vs_stock_fp32']:.2f}×** (target ≤ 0.60×, aim 0.54 ms); "
              f"int8 XNNPACK partitions: {h['int8_xnnpack_partitions']}.", "",
              "## Where the time goes", "", result["summary"], "",
              "## Per op type (profiler, mean µs per run)", "",
              "| op type | stock fp32 µs (ops) | edgecls int8 µs (ops) | int8 / fp32 | int8 as built µs (ops) |",
              "|---|---:|---:|---:|---:|"]
    fp32, int8, before = profiles["stock_fp32"], profiles["edgecls_int8"], profiles["edgecls_int8_as_built"]
    types = sorted(set(fp32["by_type"]) | set(int8["by_type"]) | set(before["by_type"]),
                   key=lambda t: -max(p["by_type"].get(t, {"us": 0})["us"] for p in (fp32, int8, before)))
    cell = lambda g: f"{g['us']:.1f} ({g['ops']})" if g else "—"  # noqa: E731
    for t in types:
        a, b = fp32["by_type"].get(t), int8["by_type"].get(t)
        ratio = f"{b['us'] / a['us']:.2f}" if a and b and a["us"] > 0 else "—"
        lines.append(f"| {t} | {cell(a)} | {cell(b)} | {ratio} | {cell(before['by_type'].get(t))} |")
    lines.append(f"| **sum of ops** (whole profiled run, timed around each call) | **{fp32['ops_total_us']:.1f}** "
                 f"({fp32['run_mean_us']:.1f}) | **{int8['ops_total_us']:.1f}** ({int8['run_mean_us']:.1f}) | "
                 f"{int8['ops_total_us'] / fp32['ops_total_us']:.2f} | {before['ops_total_us']:.1f} "
                 f"({before['run_mean_us']:.1f}) |")
    lines += ["", "The profiled run is LiteRT's CompiledModel, not the Interpreter of the headline: its wall time "
              "includes LiteRT's buffer handling and the profiler's own cost, so the sum of ops is the number to "
              "compare between models, and the headline the one to quote."]
    lines += ["", "## Per block (profiler, mean µs per run)", "", "| part | stock fp32 µs | edgecls int8 µs | int8 / fp32 |",
              "|---|---:|---:|---:|"]
    order = ["stem"] + [f"block{i}" for i in range(11)] + ["head"]
    for b in order:
        a, c = fp32["by_block"].get(b), int8["by_block"].get(b)
        if not a and not c:
            continue
        ratio = f"{c['us'] / a['us']:.2f}" if a and c and a["us"] > 0 else "—"
        lines.append(f"| {b} | {a['us'] if a else 0:.1f} | {c['us'] if c else 0:.1f} | {ratio} |")
    if result.get("attempts"):
        lines += ["", "## Attempts to make int8 faster (each measured side by side with stock fp32, this script)", "",
                  "| attempt | what | stock fp32 ms | edgecls int8 ms | int8 / fp32 | same run: int8 without "
                  "this attempt's change ms (/ fp32) | partitions | date |",
                  "|---|---|---:|---:|---:|---:|---:|---|"]
        for a in result["attempts"]:
            before = a["median_ms"][a.get("baseline", "edgecls_int8_builtin_input")]
            lines.append(f"| {a['name']} | {a['note']} | {a['stock_fp32_ms']:.3f} | {a['edgecls_int8_ms']:.3f} | "
                         f"**{a['ratio']:.2f}×** | {before:.3f} ({before / a['stock_fp32_ms']:.2f}×) | "
                         f"{a['partitions']} | {a['date']} |")
    for name in ("stock_fp32", "edgecls_int8", "edgecls_int8_as_built", "edgecls_int8_builtin_input"):
        p = profiles[name]
        lines += ["", f"## Per op: {MODELS[name]} (run order; µs, median over {p.get('chunks', 1)} chunks of the mean of "
                  f"{p['runs'] // p.get('chunks', 1)} profiled runs)", "",
                  "| # | part | op | µs | % |", "|---:|---|---|---:|---:|"]
        for i, op in enumerate(p["ops"]):
            lines.append(f"| {i} | {op['block']} | {op['name']}{' (TFLite builtin)' if op['kind'] == 'tflite' else ''} | "
                         f"{op['mean_us']:.2f} | {op['mean_us'] / p['ops_total_us']:.1%} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--runs", type=int, default=400, help="profiled runs per model")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved timing rounds")
    parser.add_argument("--round-runs", type=int, default=100, help="timed invocations per model per round")
    parser.add_argument("--attempt", help="name this run as an attempt and add its headline to the attempts table")
    parser.add_argument("--note", default="", help="what the attempt changed")
    parser.add_argument("--baseline", default="edgecls_int8_as_built", choices=sorted(set(MODELS) - {"edgecls_int8"}),
                        help="the same run's model without the attempt's change, listed beside it")
    parser.add_argument("--out", type=Path, default=RESULTS / "int8_profile")
    parser.add_argument("--render-only", action="store_true", help="rewrite the .md from the JSON, measure nothing")
    args = parser.parse_args(argv)
    if args.render_only:
        args.out.with_suffix(".md").write_text(markdown(json.loads(args.out.with_suffix(".json").read_text())))
        return 0
    blobs = build_blobs(args.size)
    profiles = profile_models(blobs, args.runs)
    head = headline(blobs, args.rounds, args.round_runs)
    previous = json.loads(args.out.with_suffix(".json").read_text()) if args.out.with_suffix(".json").is_file() else {}
    attempts = previous.get("attempts", [])
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    if args.attempt:
        attempts = [a for a in attempts if a["name"] != args.attempt] + [{
            "name": args.attempt, "note": args.note, "date": date, "stock_fp32_ms": head["median_ms"]["stock_fp32"],
            "edgecls_int8_ms": head["median_ms"]["edgecls_int8"], "ratio": head["int8_vs_stock_fp32"],
            "partitions": head["int8_xnnpack_partitions"], "median_ms": head["median_ms"], "baseline": args.baseline}]
    result = {"machine": machine(), "size": args.size, "date": date,
              "command": "python benchmarks/int8_profile.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "method": __doc__.strip().split("\n\n", 2)[2].split("Writes")[0].strip(),
              "headline": head, "summary": where_the_time_goes(profiles), "profiles": profiles, "attempts": attempts}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(result))
    print(f"edgecls int8 {head['median_ms']['edgecls_int8']:.3f} ms, stock fp32 {head['median_ms']['stock_fp32']:.3f} ms "
          f"= {head['int8_vs_stock_fp32']:.2f}x, {head['int8_xnnpack_partitions']} partition(s)")
    print(result["summary"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
