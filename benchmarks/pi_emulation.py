"""Run a Pi bundle's pi_infer.py on the Pi's architecture (aarch64) under user-mode emulation.

No Docker and no binfmt_misc: Raspberry Pi OS Bookworm's arm64 ``python3.11`` (the Debian package
and its dependencies, fetched with ``apt-get download`` through a private apt configuration, so
the host's dpkg is untouched, and unpacked with ``dpkg -x``) runs through
``qemu-aarch64 -L SYSROOT`` from Debian trixie's ``qemu-user`` package (QEMU 10, a static binary
usable straight after ``dpkg -x``; Bookworm's QEMU 7.2 crashes inside ai-edge-litert). The aarch64
wheels come from ``pip install --target --platform manylinux_*_aarch64 --only-binary=:all:``.

Two device stacks are checked, each giving the same top-1 as ``edgecls predict`` on the host:
  (a) tflite-runtime 2.14 + numpy<2   (Bookworm's Python 3.11 as shipped)
  (b) ai-edge-litert + numpy 2

This proves the bundle runs on the architecture; emulated timings say nothing about a real Pi's
latency and are never reported. Needs the Debian mirrors and PyPI; the first run downloads about
290 MB into --work (default ~/.cache/edgecls/pi-emulation), later runs reuse it.

    python benchmarks/pi_emulation.py [--work DIR] [--stacks a,b] [--out results/pi_emulation.json]
    python benchmarks/pi_emulation.py --render-only --out benchmarks/results/pi_emulation.json  # rewrites the .md
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from machine_record import machine  # noqa: E402
from machine_record import text as machine_text  # noqa: E402

from edgecls.fsutil import write_json, write_text  # noqa: E402

MIRROR = "http://deb.debian.org/debian"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
PYTHON_PACKAGES = ("python3.11", "libstdc++6", "libgcc-s1")  # the wheels' C++ code needs libstdc++
# pip takes --platform tags literally (no older glibc implied): list every glibc up to Bookworm's 2.36.
# (tflite-runtime 2.14 is tagged manylinux_2_34, ai-edge-litert 2.3 manylinux_2_27.)
AARCH64_PLATFORMS = tuple(f"manylinux_2_{minor}_aarch64" for minor in range(36, 16, -1)) + ("manylinux2014_aarch64",)
STACKS = {
    "a": {"name": "tflite-runtime 2.14 + numpy<2", "requirements": ["tflite-runtime==2.14.0", "numpy<2", "pillow"],
          "interpreter": "tflite_runtime", "numpy_major": "1"},
    "b": {"name": "ai-edge-litert + numpy 2", "requirements": ["ai-edge-litert", "numpy>=2", "pillow"],
          "interpreter": "ai_edge_litert", "numpy_major": "2"},
}


class Failed(Exception):
    pass


def run(cmd, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise Failed(f"{' '.join(str(c) for c in cmd[:4])} ... failed ({result.returncode}): " + " | ".join(tail))
    return result


# ----------------------------------------------------------------------------- private apt


def apt_options(root: Path, arch: str) -> list[str]:
    return [
        "-o", f"Dir::Etc::sourcelist={root / 'sources.list'}",
        "-o", f"Dir::Etc::sourceparts={root / 'sources.list.d'}",
        "-o", f"Dir::Etc::preferencesparts={root / 'preferences.d'}",
        "-o", f"Dir::State={root / 'state'}",
        "-o", f"Dir::State::status={root / 'state' / 'status'}",
        "-o", f"Dir::Cache={root / 'cache'}",
        "-o", f"APT::Architecture={arch}",
        "-o", f"APT::Architectures={arch}",
        "-o", "APT::Sandbox::User=root",
        "-o", "Debug::NoLocking=1",
    ]


def private_apt(work: Path, name: str, arch: str, suite: str) -> list[str]:
    """A private apt configuration (own sources, state and cache; empty dpkg status) for one suite."""
    root = work / f"apt-{name}"
    for sub in ("sources.list.d", "preferences.d", "state/lists/partial", "cache/archives/partial"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "sources.list").write_text(f"deb [arch={arch} signed-by={KEYRING}] {MIRROR} {suite} main\n")
    (root / "state" / "status").touch()  # empty: nothing counts as installed, the host's dpkg is never read
    options = apt_options(root, arch)
    if not any((root / "state" / "lists").glob("*Packages*")):
        run(["apt-get", *options, "update"], timeout=600)
    return options


def download_with_dependencies(options: list[str], packages, dest: Path) -> list[Path]:
    listing = run(["apt-cache", *options, "depends", "--recurse", "--no-recommends", "--no-suggests",
                   "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances", *packages], timeout=300)
    names = sorted({line.strip() for line in listing.stdout.splitlines()
                    if line and not line[0].isspace() and not line.startswith("<")})
    dest.mkdir(parents=True, exist_ok=True)
    run(["apt-get", *options, "download", *names], cwd=dest, timeout=900)
    return sorted(dest.glob("*.deb"))


def unpack(debs, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for deb in debs:
        run(["dpkg", "-x", deb, target], timeout=300)


def sysroot(work: Path) -> Path:
    root = work / "sysroot-bookworm-arm64"
    if (root / ".complete").exists():
        return root
    options = private_apt(work, "bookworm-arm64", "arm64", "bookworm")
    debs = download_with_dependencies(options, PYTHON_PACKAGES, work / "debs-arm64")
    shutil.rmtree(root, ignore_errors=True)
    unpack(debs, root)
    (root / ".complete").write_text("\n".join(d.name for d in debs) + "\n")
    shutil.rmtree(work / "debs-arm64", ignore_errors=True)
    return root


def qemu(work: Path) -> Path:
    binary = work / "qemu-trixie" / "usr" / "bin" / "qemu-aarch64"
    if binary.exists():
        return binary
    host_arch = run(["dpkg", "--print-architecture"]).stdout.strip()
    options = private_apt(work, f"trixie-{host_arch}", host_arch, "trixie")
    dest = work / "debs-qemu"
    dest.mkdir(parents=True, exist_ok=True)
    run(["apt-get", *options, "download", "qemu-user"], cwd=dest, timeout=900)
    unpack(sorted(dest.glob("qemu-user_*.deb")), work / "qemu-trixie")
    if not binary.exists():
        raise Failed(f"trixie's qemu-user has no {binary.relative_to(work / 'qemu-trixie')}")
    for other in binary.parent.iterdir():  # the package holds every architecture: keep aarch64's only
        if other != binary and (other.is_file() or other.is_symlink()):
            other.unlink()
    shutil.rmtree(dest, ignore_errors=True)
    return binary


def site_packages(work: Path, key: str) -> Path:
    target = work / f"site-{key}"
    if (target / ".complete").exists():
        return target
    shutil.rmtree(target, ignore_errors=True)
    platforms = [arg for p in AARCH64_PLATFORMS for arg in ("--platform", p)]
    run([sys.executable, "-m", "pip", "install", "--quiet", "--target", target, "--only-binary=:all:", *platforms,
         "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311", *STACKS[key]["requirements"]],
        timeout=900)
    (target / ".complete").touch()
    return target


# Cores qemu-user can present, with /proc/cpuinfo and feature bits to match: what the Pi 4 and Pi 5 have.
EMULATED_CPUS = {"pi4": "cortex-a72", "pi5": "cortex-a76"}


def emulated_device_python(work: Path, key: str, folder: Path, *, home: Path, cpu: str = EMULATED_CPUS["pi4"]) -> Path:
    """A ``python3`` for an emulated aarch64 device: stack ``key`` under ``qemu-aarch64 -cpu CPU``.

    Give it as ``--device-python`` to a device reached over ssh (the loopback test server): every
    command edgecls sends to the device (the probe, ``pi_infer.py``) then runs on an emulated
    Cortex-A72 (or ``cpu``), with ``HOME`` at ``home`` so the device cache lands there. Fetches
    what it needs on first use (see the module's docstring).
    """
    root, qemu_bin, site = sysroot(work), qemu(work), site_packages(work, key)
    folder.mkdir(parents=True, exist_ok=True)
    wrapper = folder / f"python3-aarch64-{key}"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "PYTHONPATH": str(site), "PYTHONNOUSERSITE": "1",
           "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
    assignments = " ".join(f"{name}={shlex.quote(value)}" for name, value in env.items())
    wrapper.write_text(f"#!/bin/sh\nexec env -i {assignments} {shlex.quote(str(qemu_bin))} -cpu {shlex.quote(cpu)} "
                       f"-L {shlex.quote(str(root))} {shlex.quote(str(root / 'usr' / 'bin' / 'python3.11'))} \"$@\"\n")
    wrapper.chmod(0o755)
    return wrapper


# ----------------------------------------------------------------------------- the bundle


def _per_tensor_dense_layers():
    """Make edgecls' int8 conversion quantize Dense/FULLY_CONNECTED weights per tensor (diagnosis only).

    TensorFlow >= 2.16 quantizes FULLY_CONNECTED weights per channel; --dense-per-tensor checks whether
    a device stack's failure comes from that (tflite-runtime 2.14 on aarch64 was seen to crash on it).
    """
    from edgecls.tf import tf

    original = tf.lite.TFLiteConverter.from_concrete_functions

    def patched(*args, **kwargs):
        converter = original(*args, **kwargs)
        converter._experimental_disable_per_channel_quantization_for_dense_layers = True
        return converter

    tf.lite.TFLiteConverter.from_concrete_functions = patched


def host_bundle(folder: Path):
    """A tiny run with an int8 export, its Pi bundle, test images and the host's predictions."""
    import numpy as np
    from PIL import Image

    import edgecls
    from edgecls.converters.tflite_convert import convert
    from edgecls.models.modeling import build_model
    from edgecls.publish import write_sidecar
    from edgecls.run_folder import RunFolder
    from edgecls.sidecar import build_sidecar
    from edgecls.training.callbacks import save_inference_model

    labels = ("red", "green", "blue")
    run_dir = folder / "run"
    run = RunFolder(run_dir)
    run.exports.mkdir(parents=True)
    model = build_model("tiny_cnn", 32, len(labels), weights="none")
    rng = np.random.default_rng(0)
    model.set_weights([w + rng.normal(0, 0.3, w.shape).astype(w.dtype) if w.ndim > 1 else w
                       for w in model.get_weights()])
    save_inference_model(model, run.model)
    images = folder / "images"
    for label in labels:
        (images / label).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 256, (24 + i, 30, 3), dtype=np.uint8)).save(images / label / f"{i}.png")
    tflite = run.int8_tflite
    calibration = rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    tflite.write_bytes(convert(model, "int8", calibration=calibration))
    write_sidecar(tflite, build_sidecar(model_file=tflite, fmt="tflite", variant="int8", labels=labels,
                                        architecture="tiny_cnn", img_size=32, input_dtype="uint8",
                                        output_kind="logits", source_run=run_dir))
    out = edgecls.bundle(run_dir, folder / "pi-bundle").path
    host = list(edgecls.predict(tflite, images, top_k=1))
    return out, images, host


def emulated(qemu_bin: Path, root: Path, site: Path, args, cwd: Path) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site), "PYTHONNOUSERSITE": "1", "LANG": "C.UTF-8",
           "PYTHONDONTWRITEBYTECODE": "1"}
    python = root / "usr" / "bin" / "python3.11"
    return run([qemu_bin, "-L", root, python, *args], env=env, cwd=cwd, timeout=900)


def check_stack(key: str, qemu_bin: Path, root: Path, site: Path, bundle_dir: Path, images: Path, host) -> dict:
    stack = STACKS[key]
    step = "importing the interpreter"
    try:
        probe = emulated(qemu_bin, root, site, ["-c", (
            "import platform, numpy\n"
            f"import {stack['interpreter']}\n"
            "print(platform.machine(), platform.python_version(), numpy.__version__)")], bundle_dir)
        machine, python_version, numpy_version = probe.stdout.split()
        step = "pi_infer.py --json"
        result = emulated(qemu_bin, root, site, ["pi_infer.py", "int8.tflite", str(images), "--json", "--top-k", "1"],
                          bundle_dir)
        device = json.loads(result.stdout)
        step = "pi_infer.py --bench"
        bench_file = bundle_dir / f"bench-{key}.json"
        emulated(qemu_bin, root, site, ["pi_infer.py", "int8.tflite", str(images), "--bench", "5", "--rounds", "1",
                                        "--warmup", "1", "--e2e-images", "2", "--bench-json", str(bench_file)],
                 bundle_dir)
    except Failed as err:
        raise Failed(f"{step}: {err}") from None
    from edgecls.benchmarking.device_rows import read_device_records

    imported = read_device_records(bench_file)
    same = [d["top_k"][0]["label"] for d in device] == [h["top_k"][0]["label"] for h in host]
    score_diff = max(abs(d["top_k"][0]["score"] - h["top_k"][0]["score"]) for d, h in zip(device, host))
    numpy_ok = numpy_version.split(".")[0] == stack["numpy_major"]
    return {
        "stack": stack["name"],
        "machine": machine,
        "python": python_version,
        "numpy": numpy_version,
        "interpreter": stack["interpreter"],
        "backend_reported": imported[0]["backend"],
        "images": len(device),
        "same_top1_as_host": same,
        "same_records_as_host": device == host,
        "max_top1_score_difference": score_diff,
        "numpy_major_ok": numpy_ok,
        "bench_file_imports": True,
        "ok": same and machine == "aarch64" and numpy_ok,
    }


def markdown(summary: dict) -> str:
    """The summary as the .md beside --out; older summaries record neither machine nor date, and say so."""
    m = summary.get("machine") or {}
    lines = ["# The Pi bundle's pi_infer.py on aarch64, under emulation", "",
             f"Host: {machine_text(m) if m else 'CPU not recorded'}; "
             f"{summary.get('date') or 'date not recorded'}; {summary.get('qemu', 'qemu not recorded')}. "
             "Written by `benchmarks/pi_emulation.py`.", "",
             "A correctness check: the bundle's own `pi_infer.py` runs on the Pi's architecture (Raspberry Pi OS "
             "Bookworm's arm64 Python under qemu-user) and must give the host's top-1 on the same images. "
             "Emulated timings say nothing about a real Pi's latency and are not reported.", "",
             f"Dense layers: {summary.get('dense_weights', 'not recorded')}.", "",
             "| stack | Python | numpy | interpreter | images | same top-1 as host | max top-1 score difference | ok |",
             "|---|---|---|---|---:|---|---:|---|"]
    for s in summary["stacks"].values():
        if "error" in s:
            lines.append(f"| {s['stack']} | — | — | — | — | — | — | **failed**: {s['error']} |")
            continue
        lines.append(f"| {s['stack']} | {s['python']} | {s['numpy']} | {s['backend_reported']} | {s['images']} | "
                     f"{'yes' if s['same_top1_as_host'] else '**no**'} | {s['max_top1_score_difference']:.2g} | "
                     f"{'yes' if s['ok'] else '**no**'} |")
    if summary.get("error"):
        lines += ["", f"**The run failed**: {summary['error']}"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path.home() / ".cache" / "edgecls" / "pi-emulation")
    parser.add_argument("--stacks", default="a,b", help="a: tflite-runtime 2.14 + numpy<2; b: ai-edge-litert + numpy 2")
    parser.add_argument("--qemu", type=Path, help="a qemu-aarch64 to use instead of trixie's")
    parser.add_argument("--out", type=Path, help="write the summary JSON here, and its .md beside it")
    parser.add_argument("--render-only", action="store_true", help="rewrite the .md from --out's JSON, run nothing")
    parser.add_argument("--dense-per-tensor", action="store_true",
                        help="diagnosis: convert with per-tensor (not per-channel) FULLY_CONNECTED weights")
    args = parser.parse_args(argv)
    if args.render_only:
        if args.out is None:
            parser.error("--render-only needs --out (the summary JSON)")
        write_text(args.out.with_suffix(".md"), markdown(json.loads(args.out.read_text())))
        return 0
    keys = [k.strip() for k in args.stacks.split(",") if k.strip()]
    if any(k not in STACKS for k in keys):
        parser.error(f"--stacks takes a and/or b, got {args.stacks}")
    for tool in ("apt-get", "apt-cache", "dpkg"):
        if shutil.which(tool) is None:
            print(f"error: {tool} not found: this script needs a Debian/Ubuntu host", file=sys.stderr)
            return 2
    args.work.mkdir(parents=True, exist_ok=True)
    summary = {"benchmark": "pi_emulation", "host": platform.machine(), "note": (
        "correctness on aarch64 under qemu-user; emulated timings say nothing about Raspberry Pi latency"),
        "date": time.strftime("%Y-%m-%d"), "machine": machine(), "stacks": {}}
    try:
        started = time.time()
        root = sysroot(args.work)
        qemu_bin = args.qemu or (None if platform.machine() == "aarch64" else qemu(args.work))
        if qemu_bin is None:
            raise Failed("native aarch64 host: run pi_infer.py directly instead")
        sites = {key: site_packages(args.work, key) for key in keys}
        summary["qemu"] = run([qemu_bin, "--version"]).stdout.splitlines()[0]
        summary["setup_seconds"] = round(time.time() - started, 1)
        summary["work_mb"] = round(sum(f.lstat().st_size for f in args.work.rglob("*") if not f.is_symlink() and f.is_file()) / 2**20)
        summary["dense_weights"] = "per-tensor (edgecls' int8 export default since tflite-runtime 2.14 crashes on per-channel Dense on aarch64)"
        if args.dense_per_tensor:
            _per_tensor_dense_layers()
        with tempfile.TemporaryDirectory() as tmp:
            bundle_dir, images, host = host_bundle(Path(tmp))
            for key in keys:
                try:
                    summary["stacks"][key] = check_stack(key, qemu_bin, root, sites[key], bundle_dir, images, host)
                except Failed as err:
                    summary["stacks"][key] = {"stack": STACKS[key]["name"], "ok": False, "error": str(err)}
    except Failed as err:
        summary["error"] = str(err)
        print(f"error: {err}", file=sys.stderr)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.out, summary)
        write_text(args.out.with_suffix(".md"), markdown(summary))
    ok = "error" not in summary and all(s.get("ok") for s in summary["stacks"].values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
