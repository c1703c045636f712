"""The offline demo, timed end to end: ``edgecls demo --force`` on a fresh machine state, its table kept.

    python benchmarks/demo.py                 # writes benchmarks/results/demo.json and demo.md
    python benchmarks/demo.py --render-only   # rewrites demo.md from demo.json

Runs ``edgecls.demo.run_demo`` (what ``edgecls demo`` calls) into a temporary folder with its own
``EDGECLS_CACHE``, as a first ``edgecls demo`` runs: writing the digits out, importing TensorFlow,
training, the optimize search, the exports, bench, the Pi bundle, its ``pi_infer.py`` and Grad-CAM
are all inside the end-to-end time (the Python interpreter's start is not).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from machine_record import machine  # noqa: E402
from result_files import add_arguments, write_or_render  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
COMMAND = "python benchmarks/demo.py"


def run(workdir: Path) -> dict:
    os.environ["EDGECLS_CACHE"] = str(workdir / "cache")  # before edgecls reads it: a first run's cache
    from edgecls.demo import run_demo
    from edgecls.sidecar import tool_versions

    started = time.perf_counter()
    result = run_demo(workdir / "demo", force=True)
    seconds = time.perf_counter() - started
    metrics = result.metrics
    chosen = None
    if result.chosen is not None:  # best.json says which optimize candidate the copied file is
        chosen = json.loads(result.chosen.with_suffix(".json").read_text()).get("optimize", {}).get("chosen")
    return {
        "benchmark": "demo",
        "command": COMMAND,
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "versions": tool_versions(),
        "seconds": round(seconds, 1),
        "train_seconds": metrics.get("train_seconds"),
        "epochs": metrics.get("epochs_run"),
        "test_images": metrics.get("num_samples"),
        "keras_test_top1": metrics.get("accuracy"),
        "chosen": None if result.chosen is None else result.chosen.name,
        "chosen_variant": chosen,
        "stages": result.stages,
    }


def _ms(value) -> str:
    return "—" if value is None else f"{value:.3f} ms"


def _chosen(result: dict) -> str:
    if not result["chosen"]:
        return "nothing within the budget (int8 bundled)"
    variant = result.get("chosen_variant")
    return f"{result['chosen']} ({variant})" if variant else result["chosen"]


def markdown(result: dict) -> str:
    m = result["machine"]
    v = result["versions"]
    lines = [
        "# `edgecls demo`, end to end",
        "",
        f"Machine: {m.get('cpu')} ({m.get('cpus')} cores, {m.get('machine')}); ISA flags: "
        f"{' '.join(m.get('isa_flags') or []) or 'not recorded'}. Python {m.get('python')}, TensorFlow "
        f"{v.get('tensorflow')}, ai-edge-litert {v.get('ai-edge-litert')}, onnxruntime {v.get('onnxruntime')}; "
        f"{result['date']}. Command: `{result['command']}`.",
        "",
        f"**{result['seconds']:.0f} s end to end**, of which {result['train_seconds']:.0f} s training simple_cnn "
        f"for {result['epochs']} epochs on the digits; chosen by `edgecls optimize --max-drop 0.5`: "
        f"{_chosen(result)}.",
        "",
        "The demo runs in a fresh temporary folder with its own cache, as a first `edgecls demo` does: "
        "the time includes writing scikit-learn's digits out as image folders and importing TensorFlow. "
        "A second `edgecls demo` reuses the trained model and skips training. Top-1 is on the "
        f"{result['test_images']} test images; latency is the p50 of the model invocation as the demo's "
        "`edgecls bench` measures it (batch 1, a few short rounds): compare the rows with each other rather than "
        "with other results.",
        "",
        "| stage | file | size | top-1 | p50 latency |",
        "|---|---|---:|---:|---:|",
    ]
    for s in result["stages"]:
        top1 = "—" if s["top1"] is None else f"{s['top1']:.2%}"
        lines.append(f"| {s['stage']} | {s['file']} | {s['size_bytes'] / 1024:,.0f} KB | {top1} | {_ms(s['latency_ms'])} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser, RESULTS / "demo")
    args = parser.parse_args(argv)

    def measure() -> dict:
        with tempfile.TemporaryDirectory(prefix="edgecls-demo-bench-") as workdir:
            return run(Path(workdir))

    print(write_or_render(args.out, args.render_only, measure, markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
