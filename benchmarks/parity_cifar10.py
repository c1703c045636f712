"""One parity table across runtimes on CIFAR-10: Keras, LiteRT, ONNX Runtime, MediaPipe Tasks and a Pi's runtimes.

For each trained CIFAR-10 run (those of ``benchmarks/results/optimize_cifar10/``, trained by
``benchmarks/cifar10.py``) this script
  1. copies the run's model into a temporary run folder and exports it again as edgecls does today
     (float32 and int8 TFLite with the standard metadata, float32 and int8 ONNX),
  2. takes the first ``--images`` test images of the run's own test split (class-balanced, by
     file name: the same files for every runtime),
  3. runs ``edgecls bench COPY --data IMAGES --parity`` on the host (Keras, LiteRT, ONNX Runtime,
     and MediaPipe Tasks' ImageClassifier when ``$EDGECLS_MEDIAPIPE_PYTHON`` names a Python with
     mediapipe), then the same with ``--device`` on an emulated Raspberry Pi 4 for each device
     stack of ``benchmarks/pi_emulation.py`` ((a) tflite-runtime 2.14 + numpy<2, (b)
     ai-edge-litert + numpy 2), or on ``--device`` when given,
  4. writes every pair of runtimes that answered for one model: top-1 agreement, mean and max
     |Δ probability|, and each one's top-1.

The emulated device's answers are real answers (qemu runs the Arm kernels XNNPACK picks for a
Cortex-A72); only its timings are meaningless, and none are reported here.

    EDGECLS_MEDIAPIPE_PYTHON=~/mediapipe-env/bin/python python benchmarks/parity_cifar10.py \\
        --runs /tmp/c10/runs/cifar10_mobilenet_v3_small /tmp/c10/runs/cifar10_efficientnet_b0 \\
        /tmp/c10/runs/cifar10_resnet9 --out benchmarks/results/parity_cifar10
    python benchmarks/parity_cifar10.py --out benchmarks/results/parity_cifar10 --render-only
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from machine_record import machine  # noqa: E402
from machine_record import text as machine_text  # noqa: E402
from result_files import add_arguments, write_or_render  # noqa: E402

WORK = Path.home() / ".cache" / "edgecls" / "pi-emulation"
# What a copied run needs for export and bench: the model, its config and labels, not its checkpoints.
RUN_FILES = ("model.keras", "config.yaml", "labels.txt", "metrics.json", "state.json", "data_scan.json")
# Only the answers matter here: as few timed runs as bench allows (emulated, one invocation of
# EfficientNet-B0 takes about half a second).
TIMING = {"runs": 3, "rounds": 1, "warmup": 1, "e2e_images": 3}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", type=Path, help="trained run folders (required unless --render-only)")
    parser.add_argument("--images", type=int, default=300, help="test images per run, class-balanced (default 300)")
    parser.add_argument("--device", help="a real device (ssh://[user@]host[:port] or an ssh alias) instead of "
                                         "the emulated Pi 4's stacks")
    parser.add_argument("--device-python", default="python3")
    parser.add_argument("--ssh-config", type=Path)
    parser.add_argument("--stacks", default="a,b", help="the emulated device's stacks (pi_emulation.py), or ''")
    parser.add_argument("--work", type=Path, default=WORK, help="pi_emulation.py's download folder")
    add_arguments(parser, ROOT / "benchmarks" / "results" / "parity_cifar10")
    args = parser.parse_args(argv)
    if not args.render_only and not args.runs:
        parser.error("give --runs RUN... (or --render-only)")
    return args


def copy_run(run: Path, copy: Path) -> Path:
    """A run folder holding only what exporting needs, so the exports are today's and the original run is untouched."""
    copy.mkdir(parents=True)
    for name in RUN_FILES:
        if (run / name).is_file():
            shutil.copy2(run / name, copy / name)
    return copy


def test_images(run: Path, count: int, folder: Path) -> Path:
    """The first ``count`` images of the run's test split, the same number per class, as class folders."""
    from edgecls.config import load_run_config
    from edgecls.data.layout import find_dataset
    from edgecls.training.data_prep import cache_root

    config = load_run_config(run)
    d = config.data
    fractions = {"train": 1.0 - d.val_fraction - d.test_fraction, "val": d.val_fraction, "test": d.test_fraction}
    files = find_dataset(d.path, fractions=fractions, seed=d.seed, cache_root=cache_root(config))
    paths, labels = files.splits["test"]
    per_class = max(1, count // len(files.classes))
    for number, name in enumerate(files.classes):
        mine = sorted(Path(p) for p, label in zip(paths, labels) if label == number)[:per_class]
        (folder / name).mkdir(parents=True)
        for path in mine:
            shutil.copy2(path, folder / name / path.name)
    return folder


class Devices:
    """(label, bench keyword arguments, emulated or None) of each device to ask: the one given, or the emulated stacks."""

    def __init__(self, args, folder: Path):
        self.args, self.folder, self.server = args, folder, None

    def __enter__(self) -> list[tuple[str, dict, dict | None]]:
        args = self.args
        if args.device:
            return [(args.device, {"device": args.device, "device_python": args.device_python,
                                   "ssh_config": args.ssh_config}, None)]
        stacks = [key for key in args.stacks.split(",") if key]
        if not stacks:
            return []
        import pi_emulation
        from ssh_device import sshd_unavailable, start_sshd

        reason = sshd_unavailable()
        if reason:
            raise SystemExit(f"error: the emulated device needs a loopback sshd: {reason}")
        self.server = start_sshd(self.folder / "sshd")
        qemu = pi_emulation.run([pi_emulation.qemu(args.work), "--version"]).stdout.splitlines()[0]
        found = []
        for key in stacks:
            python = pi_emulation.emulated_device_python(args.work, key, self.folder / "bin",
                                                         home=self.folder / f"device-home-{key}")
            found.append((f"emulated Pi 4, stack {key}", {"device": "device", "device_python": str(python),
                                                          "ssh_config": self.server.config},
                          {"qemu": qemu, "cpu": pi_emulation.EMULATED_CPUS["pi4"],
                           "stack": pi_emulation.STACKS[key]["name"]}))
        return found

    def __exit__(self, *exc) -> None:
        if self.server is not None:
            self.server.stop()


def _side(side: dict) -> dict:
    return {"model": Path(side["name"]).name, "runtime": side["runtime"]}


def _pairs(records, keep=lambda pair: True) -> list[dict]:
    from edgecls.benchmarking.parity import pairs

    return [{"a": _side(p["a"]), "b": _side(p["b"]), **{k: p[k] for k in ("images", "agreement", "mean_abs_dp",
                                                                          "max_abs_dp", "top1_a", "top1_b")}}
            for p in pairs(records) if keep(p)]


def _on_device(pair: dict) -> bool:
    return " on " in pair["a"]["runtime"] or " on " in pair["b"]["runtime"]


def mediapipe_version() -> dict:
    """{"mediapipe": version} of the Python MediaPipe Tasks runs in (its own, see edgecls.deploy.mediapipe_client)."""
    import subprocess

    from edgecls.deploy import mediapipe_client

    done = subprocess.run([mediapipe_client.python(), "-c", "import mediapipe; print(mediapipe.__version__)"],
                          capture_output=True, text=True, timeout=300, check=True)
    return {"mediapipe": done.stdout.strip()}


def one_run(run: Path, args, devices, folder: Path) -> dict:
    import edgecls
    from edgecls.deploy import mediapipe_client

    copy = copy_run(run, folder / run.name)
    edgecls.export(copy, ["tflite", "onnx"], int8=True, verbose=0)
    images = test_images(run, args.images, folder / f"{run.name}-images")
    started = time.monotonic()
    host = edgecls.bench([copy], data=images, parity_table=True, verbose=0, **TIMING)
    result = {"run": run.name, "images": sum(1 for _ in images.glob("*/*")), "host_seconds": 0.0,
              "mediapipe": mediapipe_version() if mediapipe_client.available() else mediapipe_client.why_not(),
              "models": [{"model": Path(r["name"]).name, "runtime": r["runtime"], "top1": r.get("accuracy")}
                         for r in host], "pairs": _pairs(host), "devices": []}
    result["host_seconds"] = round(time.monotonic() - started, 1)
    for label, where, emulated in devices:
        print(f"   {label}", file=sys.stderr)
        check = edgecls.check_device(where["device"], device_python=where["device_python"],
                                     ssh_config=where["ssh_config"])
        rows = edgecls.bench([copy], data=images, parity_table=True, verbose=0, device_images=args.images,
                             **where, **TIMING)
        result["devices"].append({"device": label, "emulated": emulated, "check": check.to_dict(),
                                  "pairs": _pairs(rows, _on_device)})
    return result


def measure(args) -> dict:
    from edgecls.sidecar import tool_versions

    runs = []
    with tempfile.TemporaryDirectory(prefix="edgecls-parity-") as tmp, Devices(args, Path(tmp)) as devices:
        for run in args.runs:
            print(f"== {run}", file=sys.stderr)
            runs.append(one_run(run, args, devices, Path(tmp) / "runs"))
    return {"benchmark": "parity_cifar10", "date": time.strftime("%Y-%m-%d"), "images_per_run": args.images,
            "machine": machine(), "versions": tool_versions(), "runs": runs}


def _pct(value) -> str:
    return "—" if value is None else f"{value:.2%}"


def _pair_row(pair: dict) -> str:
    a, b = pair["a"], pair["b"]
    return (f"| {a['model']} · {a['runtime']} | {b['model']} · {b['runtime']} | {pair['images']} | "
            f"{_pct(pair['agreement'])} | {pair['mean_abs_dp']:.1e} | {pair['max_abs_dp']:.1e} | "
            f"{_pct(pair['top1_a'])} | {_pct(pair['top1_b'])} |")


HEADER = ("| a | b | images | top-1 agree | mean \\|Δp\\| | max \\|Δp\\| | top-1 a | top-1 b |\n"
          "|---|---|---|---|---|---|---|---|")


def worst(result: dict) -> dict | None:
    """The pair of two different files or runtimes that agrees least, across every run and device."""
    found = [(run["run"], p) for run in result["runs"]
             for p in run["pairs"] + [q for device in run["devices"] for q in device["pairs"]]]
    return min(found, key=lambda item: (item[1]["agreement"], -item[1]["max_abs_dp"]), default=None)


def same_file_pairs(result: dict) -> list[tuple[str, dict]]:
    """Pairs of one file in two runtimes (LiteRT on the host vs MediaPipe or a device's runtime)."""
    return [(run["run"], p) for run in result["runs"]
            for p in run["pairs"] + [q for device in run["devices"] for q in device["pairs"]]
            if p["a"]["model"] == p["b"]["model"] and p["a"]["runtime"] != p["b"]["runtime"]]


def markdown(result: dict) -> str:
    lines = [f"# One parity table across runtimes, CIFAR-10 ({result['date']})", "",
             f"`edgecls bench RUN --data IMAGES --parity` on the first {result['images_per_run']} test images of each "
             "run's own test split (class-balanced), then the same with `--device` on each device; the models are "
             "exported again first (float32 and int8 TFLite with standard metadata, float32 and int8 ONNX). "
             "Every pair of runtimes that answered for one model on the same image files: top-1 agreement, mean and "
             "max |Δ probability|, and each one's top-1. Written by `benchmarks/parity_cifar10.py`.", "",
             f"- host: {machine_text(result['machine'])}"]
    for run in result["runs"][:1]:
        for device in run["devices"]:
            check = device["check"]
            emulated = device["emulated"]
            runtimes = ", ".join(f"{name} {version}" for name, version in check["runtimes"].items() if version)
            how = (f" — **emulated** ({emulated['qemu']}, `-cpu {emulated['cpu']}`, {emulated['stack']}): its answers "
                   "are the Arm kernels' real answers; no timing is reported" if emulated else "")
            lines.append(f"- {device['device']}: {check.get('cpu')} ({check['machine']}); Python {check['python']}, "
                         f"{runtimes}{how}")
    mediapipe = {run["run"]: run["mediapipe"] for run in result["runs"]}
    missing = {reason for reason in mediapipe.values() if isinstance(reason, str)}
    if missing:
        lines.append(f"- MediaPipe Tasks was not at hand ({'; '.join(sorted(missing))}): its pairs are left out")
    else:
        versions = sorted({found["mediapipe"] for found in mediapipe.values()})
        lines.append(f"- MediaPipe Tasks: ImageClassifier (mediapipe {', '.join(versions)}, in a Python of its own), "
                     "fed the decoded pixels at the model's size")
    same = same_file_pairs(result)
    if same:
        least = min(same, key=lambda item: item[1]["agreement"])
        largest = max(same, key=lambda item: item[1]["max_abs_dp"])
        lines += ["", f"**One file in two runtimes** ({len(same)} pairs): top-1 agreement at least "
                      f"{_pct(least[1]['agreement'])} ({least[0]}: {least[1]['a']['model']} · {least[1]['a']['runtime']} "
                      f"vs {least[1]['b']['runtime']}); the largest |Δp| {largest[1]['max_abs_dp']:.1e} "
                      f"({largest[0]}: {largest[1]['a']['model']} · {largest[1]['a']['runtime']} vs "
                      f"{largest[1]['b']['runtime']})."]
    low = worst(result)
    if low:
        lines.append(f"**Least agreement of any pair**: {_pct(low[1]['agreement'])} ({low[0]}: "
                     f"{low[1]['a']['model']} · {low[1]['a']['runtime']} vs {low[1]['b']['model']} · "
                     f"{low[1]['b']['runtime']}).")
    for run in result["runs"]:
        lines += ["", f"## {run['run']}", "", f"{run['images']} images. Top-1 on them: " +
                  ", ".join(f"{m['model']} · {m['runtime']} {_pct(m['top1'])}" for m in run["models"]), "",
                  "On the host:", "", HEADER, *map(_pair_row, run["pairs"])]
        for device in run["devices"]:
            lines += ["", f"With {device['device']} (pairs with its answers):", "", HEADER,
                      *map(_pair_row, device["pairs"])]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    print(write_or_render(args.out, args.render_only, lambda: measure(args), markdown))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
