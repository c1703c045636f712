"""The two cifar10-mini recipes as `edgecls train` runs them: test top-1 and training time.

    python benchmarks/cifar10_mini.py                 # writes benchmarks/results/cifar10_mini/cifar10_mini.json, .md
    python benchmarks/cifar10_mini.py --render-only   # rewrites the .md from the .json

Each recipe (``cifar10_mini_simple_cnn``, ``cifar10_mini_mobilenet_v3_small``) trains from scratch
on ``../shared/datasets/cifar10-mini.tar.gz`` into a temporary folder, exactly as
``edgecls train DATA --config RECIPE`` does; the float model's top-1 on the test split and the
summed epoch times come from the run's ``metrics.json``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine_record import machine  # noqa: E402
from result_files import add_arguments, write_or_render  # noqa: E402

RECIPES = ("cifar10_mini_simple_cnn", "cifar10_mini_mobilenet_v3_small")
DATA = ROOT.parent / "shared" / "datasets" / "cifar10-mini.tar.gz"
RESULTS = Path(__file__).resolve().parent / "results" / "cifar10_mini" / "cifar10_mini"


def train(recipe: str, data: Path, workdir: Path) -> dict:
    import edgecls

    result = edgecls.train(data, workdir / recipe, config=recipe, force=True, verbose=0)
    m = result.metrics
    return {"recipe": recipe, "arch": m.get("arch"), "img_size": m.get("img_size"), "epochs": m.get("epochs_run"),
            "best_epoch": m.get("best_epoch"), "train_seconds": m.get("train_seconds"), "test_top1": m.get("accuracy"),
            "test_top5": m.get("top5_accuracy"), "test_images": m.get("num_samples"),
            "command": f"edgecls train {data.name} --config {recipe}"}


def _pct(value) -> str:
    return "—" if value is None else f"{value:.2%}"


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = ["# cifar10-mini: the two shipped mini recipes", "",
             f"Machine: {m.get('cpu')} ({m.get('cpus')} cores, {m.get('machine')}); ISA flags: "
             f"{' '.join(m.get('isa_flags') or []) or 'not recorded'}. TensorFlow "
             f"{result['versions'].get('tensorflow')}; {result['date']}. Command: `{result['command']}`.", "",
             "Trained from scratch on `../shared/datasets/cifar10-mini.tar.gz` (a small CIFAR-10 sample: a quick "
             "check that a recipe learns, not a CIFAR-10 result; those are in `cifar10/results.md`). Top-1 of the "
             "float Keras model on the run's test split; training time is the sum of the epoch times, as "
             "`metrics.json` records it.", "",
             "| recipe | arch | input | epochs (best) | train time | test top-1 | test top-5 | test images |",
             "|---|---|---|---|---:|---:|---:|---:|"]
    for r in result["runs"]:
        lines.append(f"| {r['recipe']} | {r['arch']} | {r['img_size']} px | {r['epochs']} ({r['best_epoch']}) | "
                     f"{r['train_seconds']:.0f} s | {r['test_top1']:.2%} | {_pct(r['test_top5'])} | {r['test_images']} |")
    lines += ["", *(f"- `{r['command']}`" for r in result["runs"])]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--recipe", action="append", choices=RECIPES, help="default: both (the .json keeps only these)")
    add_arguments(parser, RESULTS)
    args = parser.parse_args(argv)

    def measure() -> dict:
        from edgecls.sidecar import tool_versions

        with tempfile.TemporaryDirectory(prefix="edgecls-mini-") as workdir:
            rows = [train(recipe, args.data, Path(workdir)) for recipe in (args.recipe or RECIPES)]
        return {"benchmark": "cifar10_mini", "command": "python benchmarks/cifar10_mini.py",
                "date": time.strftime("%Y-%m-%d"), "machine": machine(), "versions": tool_versions(), "runs": rows}

    print(write_or_render(args.out, args.render_only, measure, markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
