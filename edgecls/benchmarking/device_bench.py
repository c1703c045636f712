"""``edgecls bench MODEL... --device DEVICE``: the same rows as a local bench, measured on the device.

Every .tflite model given (run folders: their .tflite exports) and ``pi_infer.py`` go to the
device's cache once (:class:`edgecls.devices.session.Device`); the models are timed there in one
interleaved run. With ``--data``, up to ``device_images`` of its test images (spread over the
split, in folders named after their classes) are copied once and top-1 is measured there too.
A row has the fields of a host row; ``where`` names the device and its CPU.
"""

from __future__ import annotations

from pathlib import Path

from edgecls.benchmarking.harness import display_name, find_test_images, spread_sample
from edgecls.benchmarking.targets import resolve_targets
from edgecls.devices.readiness import require_tflite
from edgecls.devices.session import TIME_MODELS_TIMEOUT_S, Device
from edgecls.errors import EdgeclsError
from edgecls.results import Records

DEVICE_ONLY = ("numpy", "skipped")  # pi_infer's fields a host row has not (skipped images become a note)


def bench_on_device(models, *, device, data=None, threads: int = 1, runs: int = 50, rounds: int = 5,
                    warmup: int = 10, e2e_images: int = 50, device_images: int = 500, python: str = "python3",
                    ssh_config=None, timeout: float = TIME_MODELS_TIMEOUT_S, answers: bool = False) -> Records:
    """Bench ``models`` on ``device``; a :class:`Records` of host-shaped rows, with notes on what was copied.
    ``answers`` (with ``data``): each row also holds every image's probabilities under ``answers``, for
    ``bench --parity`` (which takes them out of the row)."""
    if threads < 1 or runs < 1 or rounds < 1 or warmup < 0 or e2e_images < 0 or device_images < 1:
        raise EdgeclsError("--threads, --runs, --rounds and --device-images must be at least 1; --warmup, "
                           "--e2e-images at least 0")
    targets = resolve_targets(models, "all")
    files = [t.path for t in targets if t.runtime == "tflite"]
    left_out = [display_name(t.path) for t in targets if t.runtime != "tflite"]
    if not files:
        raise EdgeclsError("only .tflite models run on the device (pi_infer.py); none among "
                           + ", ".join(left_out))
    notes = [f"note: only .tflite files run on the device (pi_infer.py); left out {', '.join(left_out)}"] \
        if left_out else []
    images = _device_images(data, device_images, notes)
    with Device(device, python=python, ssh_config=ssh_config) as session:
        require_tflite(session.describe(), session.name, python)
        where = session.where()
        raw = session.time_models(files, images=images, threads=threads, runs=runs, rounds=rounds, warmup=warmup,
                                  e2e_images=e2e_images, timeout=timeout, answers=answers)
        copied = (f"copied {session.copied_files} file(s), {session.copied_bytes / 1e6:.1f} MB, to "
                  if session.copied_files else "nothing to copy: everything was already in ")
        notes.append(f"note: {copied}{session.cache()} on {session.name}")
    rows = [device_row(record, where, data) for record in raw]
    skipped = max(record.get("skipped") or 0 for record in raw)
    if skipped:
        notes.append(f"note: {skipped} of the images copied to {where['on']} are not usable there and were left out")
    return Records(rows, notes=notes)


def _device_images(data, count: int, notes: list[str]):
    if data is None:
        return None
    dataset = find_test_images(data)
    pairs = spread_sample(list(zip(dataset.paths, dataset.labels)), count)
    if len(pairs) < len(dataset.paths):
        notes.append(f"note: top-1 on the device is measured on {len(pairs)} of the {len(dataset.paths)} test "
                     f"images of {data} (--device-images)")
    return [(Path(path), dataset.classes[label]) for path, label in pairs]


def device_row(record: dict, where: dict, data=None) -> dict:
    """A record of ``pi_infer.py --bench`` as a host bench row: same fields, local names, and ``where``."""
    row = {key: value for key, value in record.items() if key not in DEVICE_ONLY}
    path = Path(record["model"])
    row.update(model=str(path), name=display_name(path), source="device", data=str(data) if data else None,
               where=dict(where))
    # As a host row says it: without --data pi_infer.py times one synthetic image and measures no accuracy.
    row.setdefault("input", "images" if data else "synthetic")
    row.setdefault("accuracy_measured", bool(data))
    return row
