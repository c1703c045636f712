"""A device for the length of one command: one connection, its cache, what it is, and models timed there.

Open it once and use it for every model (``edgecls bench --device`` times all of them in one
interleaved run; an optimize search can call :meth:`Device.time_models` once per candidate and
once at the end, all through the same connection)::

    with Device("ssh://pi@raspberrypi.local") as device:
        device.where()                                      # {"on": ..., "cpu": "Cortex-A72", ...}
        rows = device.time_models([Path("int8.tflite"), Path("float32.tflite")], threads=4)

Files reach the device's cache (see :mod:`edgecls.devices.device_store`) in folders named by
the hash of their content and names: a repeat run finds them there and copies nothing.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

from edgecls.deploy.bundling import PI_INFER
from edgecls.devices import device_store, machine_probe
from edgecls.devices.ssh import CONNECT_TIMEOUT_S, Completed, SshConnection
from edgecls.errors import DeviceError

COMMAND_TIMEOUT_S = 120  # the probe, the cache listing, one copy
TIME_MODELS_TIMEOUT_S = 1800
NOT_FOUND = 127  # the shell's (and timeout's) exit code for a program that is not there


class Device:
    """One device, one connection (see the module's docstring). ``copied_files``/``copied_bytes`` count what this
    session sent to the cache."""

    def __init__(self, device, *, python: str = "python3", ssh_config=None,
                 connect_timeout: float = CONNECT_TIMEOUT_S):
        if not str(python).strip():
            raise DeviceError("--device-python must name the device's Python (default python3)")
        self.connection = SshConnection(device, ssh_config=ssh_config, connect_timeout=connect_timeout)
        self.python = str(python)
        self.copied_files = 0
        self.copied_bytes = 0
        self._present: dict[str, str] = {}  # key -> remote folder, known to exist
        self._description: dict | None = None
        self._cache: str | None = None

    @property
    def name(self) -> str:
        return self.connection.address.text

    def __enter__(self) -> Device:
        self.connection.open()
        return self

    def __exit__(self, *exc) -> None:
        self.connection.close()

    # ------------------------------------------------------------------ what it is

    def describe(self) -> dict:
        """:func:`edgecls.devices.machine_probe.describe`, run on the device (once per session)."""
        if self._description is None:
            out = self._script(machine_probe, [], what="the machine probe")
            self._description = _json(out, "the machine probe", self.name)
        return self._description

    def where(self) -> dict:
        """The ``where`` of a latency measured here: this device, its CPU and its kernel-deciding flags."""
        return machine_probe.where(self.describe(), on=self.name)

    def cache(self) -> str:
        """The absolute path of edgecls' cache on the device (made, mode 700, on first use)."""
        if self._cache is None:
            self._cache = _json(self._script(device_store, ["prepare"], what="making the cache"), "the cache",
                                self.name)
        return self._cache

    # ------------------------------------------------------------------ files

    def upload(self, entries: list[dict]) -> list[str]:
        """Make each entry (``{name in its folder: local Path or bytes}``) a folder of the cache; their remote paths.

        Entries already on the device (same names, same bytes) are not copied again.
        """
        keys = [entry_key(files) for files in entries]
        unknown = sorted({key for key in keys if key not in self._present})
        if unknown:
            missing = set(_json(self._script(device_store, ["missing", *unknown], what="listing the cache"),
                                "the cache listing", self.name))
            archive, count = _tar({key: files for key, files in zip(keys, entries) if key in missing})
            if count:
                self._script(device_store, ["unpack"], stdin=archive, what=f"copying {count} file(s)",
                             timeout=max(COMMAND_TIMEOUT_S, len(archive) / 1e6))  # >= 1 MB/s
                self.copied_files += count
                self.copied_bytes += len(archive)
            cache = self.cache()
            self._present.update({key: f"{cache}/{key}" for key in unknown})
        return [self._present[key] for key in keys]

    # ------------------------------------------------------------------ timing

    def time_models(self, models, *, images=None, threads: int = 1, runs: int = 50, rounds: int = 5,
                    warmup: int = 10, e2e_images: int = 50, timeout: float = TIME_MODELS_TIMEOUT_S,
                    answers: bool = False) -> list[dict]:
        """Time ``models`` (local .tflite paths) on the device, interleaved round by round, with ``pi_infer.py --bench``.

        ``images``: (local file, class name) pairs, copied once and used for top-1 (and the
        end-to-end timing); without them one fixed synthetic image is timed and accuracy is None.
        ``runs`` are per round, as in a local bench. Returns pi_infer's records in the order of
        ``models``, with ``model`` set to the local path. ``answers`` (with ``images``): each record's
        ``answers`` holds every image's probabilities, its ``files`` the local paths of ``images``.
        """
        models = [Path(m) for m in models]
        if not models:
            raise DeviceError("no model to time on the device")
        for model in models:
            if model.suffix.lower() != ".tflite":
                raise DeviceError(f"only .tflite models run on the device (pi_infer.py): {model}")
        image_files = _image_entry(images)
        entries = [{"pi_infer.py": PI_INFER}, image_files, *(_model_entry(m) for m in models)]
        script, image_dir, *remote = self.upload(entries)
        argv = [f"{script}/pi_infer.py", f"{remote[0]}/{models[0].name}", image_dir, "--bench", str(runs * rounds),
                "--rounds", str(rounds), "--warmup", str(warmup), "--e2e-images", str(e2e_images),
                "--threads", str(threads), "--bench-json", "-"]
        for folder, model in zip(remote[1:], models[1:]):
            argv += ["--compare", f"{folder}/{model.name}"]
        if answers and images:
            argv.append("--answers")
        done = self.connection.run([self.python, *argv], timeout=timeout, what="pi_infer.py --bench")
        self._judge(done, "pi_infer.py --bench")
        records = _json(done.stdout, "pi_infer.py --bench", self.name)
        if not isinstance(records, list) or len(records) != len(models):
            raise DeviceError(f"pi_infer.py --bench on {self.name} returned {len(records)} records for "
                              f"{len(models)} models")
        for record, model in zip(records, models):
            record["model"] = str(model)
            if isinstance(record.get("answers"), dict):  # the device's copies by their local originals
                local = {name: str(path) for name, path in image_files.items()}
                record["answers"]["files"] = [local.get("/".join(Path(f).parts[-2:]), f)
                                              for f in record["answers"]["files"]]
        return records

    # ------------------------------------------------------------------ plumbing

    def _script(self, module, args, *, what: str, stdin: bytes | None = None,
                timeout: float = COMMAND_TIMEOUT_S) -> bytes:
        """Run one of edgecls' stdlib scripts (a module of this package) on the device with the device's Python."""
        source = Path(module.__file__).read_text(encoding="utf-8")
        done = self.connection.run([self.python, "-c", source, *args], stdin=stdin, timeout=timeout, what=what)
        self._judge(done, what)
        return done.stdout

    def _judge(self, done: Completed, what: str) -> None:
        if done.returncode == NOT_FOUND:
            raise DeviceError(f"cannot run {self.python!r} on {self.name} ({done.error_line()}); "
                              "give its Python with --device-python PATH")
        if done.returncode != 0:
            line = done.error_line()
            line = line[len("error: "):] if line.startswith("error: ") else line
            raise DeviceError(f"{what} failed on {self.name}: {line}")


def entry_key(files: dict) -> str:
    """The cache name of a folder: a hash of its file names and their bytes."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode("utf-8") + b"\0" + hashlib.sha256(_bytes(files[name])).digest())
    return digest.hexdigest()[:32]


def _bytes(content) -> bytes:
    return content if isinstance(content, bytes) else Path(content).read_bytes()


def _tar(entries: dict[str, dict]) -> tuple[bytes, int]:
    buffer, count = io.BytesIO(), 0
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for key, files in sorted(entries.items()):
            for name in sorted(files):
                data = _bytes(files[name])
                info = tarfile.TarInfo(f"{key}/{name}")
                info.size, info.mode = len(data), 0o600
                archive.addfile(info, io.BytesIO(data))
                count += 1
    return buffer.getvalue(), count


def _model_entry(model: Path) -> dict:
    """The model and, when there is one, its sidecar beside it (which pi_infer.py prefers to the embedded copy)."""
    if not model.is_file():
        raise DeviceError(f"model file not found: {model}")
    _check_name(model.name)
    files = {model.name: model}
    sidecar = model.with_suffix(".json")
    if sidecar.is_file():
        files[sidecar.name] = sidecar
    return files


def _image_entry(images) -> dict:
    """Images in folders named after their classes (file names: their hashes), or one synthetic image."""
    if not images:
        return {"synthetic/timing.png": synthetic_image()}
    files = {}
    for path, label in images:
        path = Path(path)
        _check_name(str(label))
        files[f"{label}/{hashlib.sha256(path.read_bytes()).hexdigest()[:20]}{path.suffix.lower()}"] = path
    return files


def _check_name(name: str) -> None:
    if not name or name.startswith(".") or "/" in name or any(ord(c) < 32 for c in name):
        raise DeviceError(f"cannot copy {name!r} to the device: a file or class name must not start with '.' "
                          "or hold '/' or control characters")


def synthetic_image(size: int = 64) -> bytes:
    """A fixed noise PNG (same bytes every time, so it is copied once) for timing without --data."""
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG", optimize=False, compress_level=6)
    return out.getvalue()


def _json(out: bytes, what: str, device: str):
    try:
        return json.loads(out.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        tail = out.decode("utf-8", "replace").strip().splitlines()[-1:] or ["nothing"]
        raise DeviceError(f"{what} on {device} printed no JSON ({tail[0][:120]})") from None
