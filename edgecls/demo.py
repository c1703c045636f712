"""``edgecls demo``: the whole product offline, on scikit-learn's bundled handwritten digits.

Train → ``edgecls optimize`` (the fastest TFLite model within 0.5 pt of float) → export float32
TFLite and ONNX → bench Keras, TFLite fp32, TFLite int8 and ONNX side by side → bundle for the
Pi → run the bundle's own ``pi_infer.py`` in a fresh process on a few test images → Grad-CAM of
some of them for the run's report → one table.
Every step is a public API call, so the demo is also a worked example of the library.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from edgecls.results import DemoResult

DEMO_RECIPE = "demo_digits"
PI_IMAGES = 8  # test images the bundle's pi_infer.py classifies in its own process
NEXT_STEPS = (
    "edgecls train DATA --out runs/mine                   # your class folders (or a .zip/.tar of them)",
    "edgecls optimize runs/mine --max-drop 0.5            # the fastest model within 0.5 pt of float",
    "edgecls bundle runs/mine --model runs/mine/exports/best.tflite --out pi_bundle   # then on the Pi: python3 pi_infer.py IMG",
)


def run_demo(out, *, epochs: int = 10, force: bool = False, time_budget: str | float = "90s",
             verbose: int = 1) -> DemoResult:
    """Run the whole product on the digits into ``out`` (default ``runs/demo``); a :class:`DemoResult`.

    ``time_budget`` bounds the optimize search. An existing demo run is reused for the later
    stages unless ``force`` (which retrains it).

    Example::

        >>> from edgecls.demo import run_demo
        >>> result = run_demo("runs/demo", epochs=10)  # doctest: +SKIP
        >>> [row["stage"] for row in result.stages][:2]  # doctest: +SKIP
        ['Keras float32', 'TFLite float32']
    """
    from edgecls import api
    from edgecls.data.decode import default_cache_root
    from edgecls.data.demo_digits import write_digits_dataset
    from edgecls.run_folder import RunFolder

    out = Path(out)
    data_dir = write_digits_dataset(default_cache_root() / "datasets" / "digits")
    _say(verbose, f"demo 1/6: train simple_cnn on 1,797 handwritten digits (scikit-learn, offline) → {out}")
    if RunFolder(out).model.is_file() and RunFolder(out).metrics.is_file() and not force:
        _say(verbose, f"  {out} is already trained (--force retrains it)")
        run_dir, metrics = out, json.loads(RunFolder(out).metrics.read_text())
    else:
        trained = api.train(data_dir, out, config=DEMO_RECIPE, epochs=epochs, force=force, verbose=verbose)
        run_dir, metrics = trained.run_dir, trained.metrics
    folder = RunFolder(run_dir)

    _say(verbose, "demo 2/6: edgecls optimize --max-drop 0.5 (chosen on validation, reported on test)")
    searched = api.optimize(run_dir, max_drop=0.5, time_budget=time_budget, verbose=verbose)
    _say(verbose, "demo 3/6: export float32 TFLite and ONNX, and int8 TFLite")
    exported = api.export(run_dir, ["tflite", "onnx"], verbose=0)
    int8 = api.quantize(run_dir, int8=True, verbose=0)[0]
    fp32_tflite = next(r.path for r in exported if Path(r.path).suffix == ".tflite")
    fp32_onnx = next(r.path for r in exported if Path(r.path).suffix == ".onnx")
    chosen = searched.best_path

    _say(verbose, "demo 4/6: bench Keras, TFLite and ONNX side by side on the test split (1 thread)")
    test_dir = _link_test_split(run_dir, folder.path / "test_images")
    files = [folder.model, Path(fp32_tflite), Path(int8.path), Path(fp32_onnx)]
    if chosen is not None and chosen.is_file():
        files.append(chosen)
    rows = api.bench(files, data=test_dir, runtime="all", threads=1, runs=30, rounds=3, warmup=5, e2e_images=20,
                     json_out=folder.bench_json, verbose=0)

    _say(verbose, "demo 5/6: bundle for the Raspberry Pi")
    device_model = chosen if chosen is not None else Path(int8.path)
    bundled = api.bundle(run_dir, folder.path / "pi_bundle", model=device_model, force=True)

    _say(verbose, f"demo 6/6: the bundle's pi_infer.py in its own process on {PI_IMAGES} test images")
    images = _spread(test_dir, PI_IMAGES)
    pi_row = _run_pi_infer(bundled.path, images, device_model.name)
    # Grad-CAM of a few of the same images, for the run's report (which every API call rebuilds).
    api.gradcam(run_dir, images[:4], folder.path / "gradcam", verbose=0)

    stages = [_stage(row) for row in rows] + [pi_row]
    return DemoResult(run_dir=run_dir, metrics=metrics, chosen=chosen, bundle=bundled.path, stages=stages)


def _stage(row: dict) -> dict:
    names = {("keras", "keras"): "Keras float32", ("tflite", "tflite"): "TFLite", ("onnx", "onnx"): "ONNX"}
    label = names.get((row["format"], row["runtime"]), f"{row['format']} on {row['runtime']}")
    if row["format"] != "keras":
        variant = "best" if Path(row["model"]).stem == "best" else str(row["variant"]).removeprefix("onnx_")
        label += f" {variant}"
    return {"stage": label, "file": Path(row["model"]).name, "size_bytes": row["size_bytes"],
            "top1": row["accuracy"], "latency_ms": (row.get("latency_ms") or {}).get("p50")}


def _link_test_split(run_dir: Path, target: Path) -> Path:
    """The run's test images as class folders of symlinks (bench measures accuracy on a folder)."""
    from edgecls.config import load_run_config
    from edgecls.data.layout import find_dataset
    from edgecls.training.data_prep import cache_root

    config = load_run_config(run_dir)
    d = config.data
    fractions = {"train": 1.0 - d.val_fraction - d.test_fraction, "val": d.val_fraction, "test": d.test_fraction}
    files = find_dataset(d.path, fractions=fractions, seed=d.seed, cache_root=cache_root(config))
    paths, labels = files.splits["test"]
    if target.is_dir():
        return target
    # Built beside and renamed, so an interrupted demo never leaves half a test folder.
    staging = Path(tempfile.mkdtemp(prefix=".edgecls-tmp-", dir=target.parent))
    try:
        for path, label in zip(paths, labels):
            folder = staging / files.classes[label]
            folder.mkdir(exist_ok=True)
            os.symlink(Path(path).resolve(), folder / Path(path).name)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _spread(test_dir: Path, count: int) -> list[Path]:
    """``count`` test images spread over the classes (the files are sorted by class)."""
    files = sorted(test_dir.glob("*/*"))
    return files[:: max(1, len(files) // count)][:count]


def _run_pi_infer(bundle: Path, images: list[Path], model_name: str) -> dict:
    command = [sys.executable, str(bundle / "pi_infer.py"), str(bundle / model_name), *map(str, images), "--json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        from edgecls.errors import EdgeclsError

        raise EdgeclsError(f"the bundle's pi_infer.py failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    records = json.loads(done.stdout)
    right = sum(r["top_k"][0]["label"] == Path(image).parent.name for r, image in zip(records, images))
    return {"stage": f"pi_infer.py ({right}/{len(images)})", "file": model_name,
            "size_bytes": (bundle / model_name).stat().st_size, "top1": right / len(images), "latency_ms": None}


def print_summary(result: DemoResult) -> None:
    """The closing table (stage, file, size, top-1, latency) and the three commands to run next, on stdout."""
    from rich.console import Console
    from rich.table import Table

    table = Table("stage", "file", "size", "top-1", "p50 latency", title=f"edgecls demo → {result.run_dir}")
    for row in result.stages:
        top1 = "—" if row["top1"] is None else f"{row['top1'] * 100:.2f} %"
        latency = "—" if row["latency_ms"] is None else f"{row['latency_ms']:.3f} ms"
        table.add_row(row["stage"], row["file"], f"{row['size_bytes'] / 1024:,.0f} KB", top1, latency)
    console = Console(width=None if sys.stdout.isatty() else 120)
    console.print(table)
    chosen = result.chosen.name if result.chosen is not None else "none within 0.5 pt (int8 bundled)"
    console.print(f"chosen by edgecls optimize: {chosen}; report: {result.run_dir / 'report.html'}; "
                  f"Pi bundle: {result.bundle}")
    console.print("Next, on your own images:")
    for line in NEXT_STEPS:
        console.print(f"  {line}", markup=False, highlight=False)


def _say(verbose: int, text: str) -> None:
    if verbose:
        print(text, file=sys.stderr)
