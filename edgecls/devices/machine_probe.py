"""What machine is this: CPU model, the instruction sets that decide kernels, cores, memory, Python, runtimes.

One function, :func:`describe`, for the host and for a device alike: edgecls imports it here, and
sends this file's source over ssh to run it on the device (``python3 -c SOURCE``), so it is
stdlib-only and runs on the Pi's older Pythons (3.7+). It imports no runtime (that would take
seconds and memory on a Pi); versions come from the installed packages' metadata.

The CPU model alone does not say which kernels XNNPACK picks (a VM may hide AVX-512 or VNNI from
its guest); the flags do. ``features`` answers for the ones that decide int8 and fp16 speed.
"""

import json
import os
import platform
import sys

# x86: AVX2/FMA kernels, AVX-512, int8 dot products (VNNI), AMX. Arm: NEON, dot products (asimddp),
# fp16 arithmetic (fphp/asimdhp), int8 matrix multiply (i8mm).
X86_FEATURES = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16",
                "amx_tile", "amx_int8", "amx_bf16")
ARM_FEATURES = ("asimd", "asimddp", "fphp", "asimdhp", "i8mm", "bf16", "sve", "sve2")
FLAG_PREFIXES = ("sse", "ssse3", "avx", "fma", "f16c", "amx", "asimd", "fphp", "sve", "i8mm", "bf16")
RUNTIMES = (("ai-edge-litert", "ai_edge_litert"), ("tflite-runtime", "tflite_runtime"),
            ("onnxruntime", "onnxruntime"), ("numpy", "numpy"), ("pillow", "PIL"))
# The Arm cores of the boards edgecls is for, by /proc/cpuinfo's "CPU part" (implementer 0x41, Arm).
ARM_CORES = {"0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
             "0xd08": "Cortex-A72", "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76",
             "0xd0d": "Cortex-A77", "0xd41": "Cortex-A78", "0xd0c": "Neoverse-N1", "0xd40": "Neoverse-V1",
             "0xd49": "Neoverse-N2", "0xd4f": "Neoverse-V2", "0xd46": "Cortex-A510", "0xd47": "Cortex-A710"}


def describe(cpuinfo="/proc/cpuinfo"):
    """This machine, as a JSON-ready dict (see :class:`edgecls.results.DeviceCheckResult` for the fields)."""
    fields = _cpuinfo_fields(cpuinfo)
    flags = (fields.get("flags") or fields.get("Features") or "").split()
    return {
        "machine": platform.machine(),
        "system": platform.system(),
        "host": platform.node(),
        "cpu": _cpu_model(fields),
        "board": _board(),
        "cpu_flags": sorted(flag for flag in set(flags) if flag.startswith(FLAG_PREFIXES)),
        "features": {name: name in flags for name in (ARM_FEATURES if "Features" in fields else X86_FEATURES)},
        "cores": os.cpu_count(),
        "memory_mb": _memory_mb(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "runtimes": {name: _version(name, module) for name, module in RUNTIMES},
    }


def where(description, on):
    """Where a latency was taken: ``on`` (``host`` or the device as given), and the CPU that ran it."""
    keys = ("host", "machine", "cpu", "board", "cpu_flags", "cores")
    return dict([("on", on)] + [(key, description.get(key)) for key in keys])


def where_text(where):
    """One line for a ``where``: "device: Cortex-A72 (aarch64, 4 cores; asimd)", the deciding features named."""
    if not where:
        return "unknown"
    flags = set(where.get("cpu_flags") or [])
    deciding = [f for f in X86_FEATURES + ARM_FEATURES if f in flags and f not in ("fma", "avx512bw")]
    cores = "%s cores" % where["cores"] if where.get("cores") else None
    detail = ", ".join(part for part in (where.get("machine"), cores) if part)
    text = "%s: %s" % (where.get("on") or "?", where.get("cpu") or "unknown CPU")
    if detail or deciding:
        text += " (%s%s)" % (detail, "; " + " ".join(deciding) if deciding else "")
    return text


_HOST = []


def host_description():
    """:func:`describe` of this machine, once per process (a copy)."""
    if not _HOST:
        _HOST.append(describe())
    return json.loads(json.dumps(_HOST[0]))


def host_where():
    """:func:`where` for this machine."""
    return where(host_description(), "host")


def _cpuinfo_fields(path):
    """The first processor's ``key: value`` lines of /proc/cpuinfo (keys as written), plus file-level ones."""
    fields = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, sep, value = line.partition(":")
                key = key.strip()
                if sep and key and key not in fields:
                    fields[key] = value.strip()
    except OSError:
        pass
    return fields


def _cpu_model(fields):
    # Arm's "model name", where there is one, is a generic "ARMv8 Processor rev 3": the part number names the core.
    core = ARM_CORES.get(fields.get("CPU part", "").lower())
    if core and fields.get("CPU implementer", "").lower() == "0x41":
        return core
    return fields.get("model name") or platform.processor() or fields.get("Hardware") or None


def _board():
    try:
        with open("/proc/device-tree/model", "rb") as handle:
            return handle.read().decode("utf-8", "replace").strip("\x00\n ") or None
    except OSError:
        return None


def _memory_mb():
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _version(distribution, module):
    """The installed version of ``distribution`` (None when it is not installed), without importing it."""
    try:
        from importlib import metadata
    except ImportError:  # Python 3.7
        metadata = None
    if metadata is not None:
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            pass
    try:
        import importlib.util

        if importlib.util.find_spec(module) is None:
            return None
    except (ImportError, ValueError):
        return None
    return "installed (version unknown)"


if __name__ == "__main__":
    json.dump(describe(), sys.stdout)
