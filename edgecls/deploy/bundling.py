"""``edgecls bundle RUN --target pi --out DIR``: a folder to copy to a Raspberry Pi and run there.

Contents: the model (int8 TFLite by default), its sidecar, labels.txt, pi_infer.py,
requirements-pi.txt and a README with the commands. The folder is assembled under a temporary
name beside DIR and renamed into place, so DIR is either the old bundle or the complete new one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from edgecls.deploy.runtimes import open_model
from edgecls.errors import EdgeclsError, ModelFileError
from edgecls.models.model_files import read_labels
from edgecls.run_folder import LABELS, RunFolder
from edgecls.sidecar import check_outputs_match_labels, check_pair, read_sidecar, sidecar_path

TARGETS = ("pi",)
PI_INFER = Path(__file__).with_name("pi_infer.py")

# Bookworm ships Python 3.11: tflite-runtime stops at 2.14 (Python <= 3.11) and needs NumPy 1.x.
# Newer Pythons take LiteRT (ai-edge-litert), the same interpreter API, on NumPy 2.
REQUIREMENTS_PI = """\
# pip install -r requirements-pi.txt   (64-bit Raspberry Pi OS; see README.md)
numpy>=1.23,<2 ; python_version < "3.12"
tflite-runtime==2.14.0 ; python_version < "3.12"
numpy>=2 ; python_version >= "3.12"
ai-edge-litert>=2.1 ; python_version >= "3.12"
pillow>=9.1
"""


def bundle(run, *, out, target: str = "pi", model=None, force: bool = False) -> Path:
    """Assemble the bundle for ``run`` (a run folder) into ``out``; returns ``out``."""
    run, out = Path(run), Path(out)
    if target not in TARGETS:
        raise EdgeclsError(f"unknown target '{target}'; choose {', '.join(TARGETS)}")
    if not run.is_dir():
        raise EdgeclsError(f"run folder not found: {run}")
    model_path = _chosen_model(run, model)
    sidecar = read_sidecar(model_path)
    if sidecar is None:
        raise ModelFileError(f"{model_path} has no sidecar ({sidecar_path(model_path).name}): the device needs its "
                             "labels and preprocessing; export it with edgecls (quantize/export write the sidecar)")
    # A truncated or foreign file would otherwise fail only on the device, after the copy.
    runtime = open_model(model_path, quiet=True)
    if RunFolder(run).labels.is_file():  # and it must answer for this run's classes, not another's
        check_outputs_match_labels(runtime.num_classes, read_labels(run), model_path, source=str(RunFolder(run).labels))
    _check_out(out, force)

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{out.name}-", dir=out.parent))
    try:
        shutil.copy2(model_path, staging / model_path.name)
        shutil.copy2(sidecar_path(model_path), staging / sidecar_path(model_path).name)
        check_pair(staging / model_path.name, sidecar, sidecar_path(model_path))  # not replaced while we copied
        (staging / LABELS).write_text("".join(f"{label}\n" for label in sidecar["labels"]), encoding="utf-8")
        shutil.copy2(PI_INFER, staging / "pi_infer.py")
        (staging / "requirements-pi.txt").write_text(REQUIREMENTS_PI, encoding="utf-8")
        (staging / "README.md").write_text(readme(model_path.name, sidecar, out.name), encoding="utf-8")
        _swap_into_place(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return out


def _chosen_model(run: Path, model) -> Path:
    if model is None:
        path = RunFolder(run).int8_tflite
        if not path.is_file():
            raise ModelFileError(f"{run} has no int8 export ({path.relative_to(run)}): make it with "
                                 f"`edgecls quantize {run} --int8`, or choose a model with --model FILE")
        return path
    path = Path(model)
    if not path.is_file() and (run / path).is_file():
        path = run / path
    if not path.is_file():
        raise ModelFileError(f"model file not found: {model}")
    if path.suffix.lower() != ".tflite":
        raise ModelFileError(f"the Pi bundle runs TFLite models; {path} is not a .tflite file")
    return path


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise EdgeclsError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise EdgeclsError(f"--out {out} is not empty; use --force to replace it")


def _swap_into_place(staging: Path, out: Path) -> None:
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".old-{out.name}-", dir=out.parent))
        os.rmdir(old)
        os.replace(out, old)
    try:
        os.replace(staging, out)
    except OSError:
        if old is not None:
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def measured_accuracy(sidecar: dict) -> str:
    """The sentence of the README that states the accuracy edgecls measured on this very file."""
    accuracy = sidecar.get("accuracy")
    if not isinstance(accuracy, dict) or not _is_number(accuracy.get("top1")):
        # Written by hand or by an older edgecls: `edgecls quantize` / `export` measure every file.
        return "Its accuracy was not measured at export (`edgecls quantize` and `edgecls export` measure it)."
    count, split = accuracy.get("num_samples"), accuracy.get("split") or "test"
    on = f" on the {count} images of the {split} split" if _is_number(count) else f" on the {split} split"
    text = f"Measured top-1 accuracy of this file: {100 * accuracy['top1']:.1f} %{on}"
    if _is_number(accuracy.get("top5")):
        text += f" (top-5 {100 * accuracy['top5']:.1f} %)"
    if _is_number(accuracy.get("float_top1")):
        text += f"; the float Keras model it came from: {100 * accuracy['float_top1']:.1f} %"
    return text + "."


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def readme(model_name: str, sidecar: dict, folder: str) -> str:
    size = sidecar.get("input", {}).get("shape", [None, "?", "?"])
    measured = "\n" + measured_accuracy(sidecar)
    return f"""# {folder}: an edgecls classifier for the Raspberry Pi

`{model_name}` ({sidecar.get('variant', 'model')}, {sidecar.get('architecture', '?')}, input {size[1]}×{size[2]} RGB)
classifies into {len(sidecar['labels'])} classes ({', '.join(sidecar['labels'][:8])}{', ...' if len(sidecar['labels']) > 8 else ''}).{measured}
Its sidecar `{Path(model_name).with_suffix('.json').name}` holds the labels and preprocessing; `pi_infer.py` reads it and
needs only numpy, pillow and a TFLite interpreter (no TensorFlow, no edgecls).

## Install (64-bit Raspberry Pi OS)

Copy this folder to the Pi, e.g. `scp -r {folder} pi@raspberrypi.local:~/`, then on the Pi:

```sh
cd ~/{folder}
python3 -m venv --system-site-packages .venv   # system site packages: picamera2 for --camera
. .venv/bin/activate
pip install -r requirements-pi.txt
```

- Raspberry Pi OS Bookworm has Python 3.11: that installs `tflite-runtime==2.14.0` with `numpy<2`
  (tflite-runtime stops at 2.14 and Python 3.11; it does not work with NumPy 2).
- Python 3.12 or newer installs `ai-edge-litert` (LiteRT, the successor with the same API) with NumPy 2.
- The wheels are for 64-bit (aarch64) Raspberry Pi OS; the 32-bit OS is not supported.

## Run

```sh
python3 pi_infer.py {model_name} photo.jpg --top-k 3 --threads 4        # one line per image
python3 pi_infer.py {model_name} photos/ --json > predictions.json      # same records as `edgecls predict --json`
python3 pi_infer.py {model_name} --camera 10 --threads 4                # 10 frames: picamera2, else OpenCV
```

Camera: `sudo apt install python3-picamera2` (Raspberry Pi camera), or `pip install opencv-python-headless`
for a USB camera (`--camera-index N` picks the device).

## Measure on the Pi, compare on the host

```sh
python3 pi_infer.py {model_name} test_images/ --bench 200 --threads 4 --bench-json pi_bench.json
```

`--bench N` times N model invocations (set_tensor + invoke + get_tensor, after a warm-up, in rounds),
the file-to-answer time and the peak memory; with images in folders named after the classes it also
measures accuracy. Copy `pi_bench.json` back and join it to the host's table:

```sh
edgecls bench RUN --runtime all --data DATA --import pi_bench.json --json-out bench.json --csv bench.csv
```
"""
