"""``edgecls device check``: what a device is, what it has installed, and the exact line for what it lacks.

Nothing is installed on the device: a missing piece is one line with the ``pip install`` to run
there. The TFLite runtime follows the bundle's requirements (``edgecls.deploy.bundling``):
tflite-runtime 2.14 with NumPy 1 up to Python 3.11 (Raspberry Pi OS Bookworm), LiteRT from 3.12.
"""

from __future__ import annotations

import shlex

from edgecls.devices.session import Device
from edgecls.errors import DeviceError
from edgecls.results import DeviceCheckResult

NEEDED = "needed"
OPTIONAL = "optional"


def check_device(device, *, python: str = "python3", ssh_config=None) -> DeviceCheckResult:
    """Connect, probe, make the cache; a :class:`DeviceCheckResult` (missing runtimes are lines, not errors)."""
    with Device(device, python=python, ssh_config=ssh_config) as session:
        description = session.describe()
        cache = session.cache()
    return DeviceCheckResult(
        device=session.name, machine=description.get("machine") or "?", cpu=description.get("cpu"),
        board=description.get("board"), features=dict(description.get("features") or {}),
        cpu_flags=list(description.get("cpu_flags") or []), cores=description.get("cores"),
        memory_mb=description.get("memory_mb"), python=description.get("python") or "?",
        python_executable=description.get("python_executable") or python,
        runtimes=dict(description.get("runtimes") or {}), missing=missing_lines(description, python),
        cache=cache, host=description.get("host"), system=description.get("system"))


def missing_lines(description: dict, python: str = "python3") -> list[str]:
    """One line per missing piece, ``needed: ...`` (to bench TFLite models) or ``optional: ...``, with its pip line."""
    runtimes = description.get("runtimes") or {}
    pip = f"{shlex.quote(python)} -m pip install"
    version = _version_tuple(description.get("python"))
    lines = []
    tflite = runtimes.get("ai-edge-litert") or runtimes.get("tflite-runtime")
    if not tflite:
        if version >= (3, 12):
            package = "ai-edge-litert"
        elif version >= (3, 8):
            package = "tflite-runtime==2.14.0 'numpy<2'"
        else:
            package = "tflite-runtime"
        lines.append(f"{NEEDED}: a TFLite runtime; run on the device: {pip} {package}")
    if not runtimes.get("numpy") and tflite:  # both runtimes bring numpy along when pip installs them
        lines.append(f"{NEEDED}: numpy; run on the device: {pip} numpy")
    if not runtimes.get("pillow"):
        lines.append(f"{NEEDED}: pillow (images); run on the device: {pip} pillow")
    if not runtimes.get("onnxruntime"):
        lines.append(f"{OPTIONAL}: onnxruntime (only for .onnx models); run on the device: {pip} onnxruntime")
    return lines


def require_tflite(description: dict, device: str, python: str = "python3") -> None:
    """A one-line :class:`DeviceError` when ``pi_infer.py`` cannot run on the device; the first missing piece."""
    needed = [line for line in missing_lines(description, python) if line.startswith(NEEDED)]
    if needed:
        raise DeviceError(f"{device} cannot run TFLite models yet: {needed[0][len(NEEDED) + 2:]}"
                          + (f" (and {len(needed) - 1} more: edgecls device check {device})" if len(needed) > 1
                             else ""))


def _version_tuple(text) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in str(text).split(".")[:2])
    except ValueError:
        return (0,)
