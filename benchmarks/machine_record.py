"""Where a timing was taken: edgecls' machine record, the core count and the CPU's vector instruction sets.

The CPU model alone does not say which kernels TensorFlow and XNNPACK pick (a VM may hide AVX-512,
VNNI or bfloat16 from its guest); lscpu's flags do. Only the families that choose kernels are kept.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgecls.benchmarking.harness import machine_info

# x86 SIMD and matrix units; Arm NEON/SVE, their dot products and bfloat16.
ISA_PREFIXES = ("sse", "ssse3", "avx", "fma", "f16c", "amx", "asimd", "sve", "i8mm", "bf16")


def isa_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> list[str]:
    """The kernel-choosing flags of the first CPU in ``cpuinfo`` (x86 ``flags``, Arm ``Features``), sorted."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return []
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return sorted(flag for flag in value.split() if flag.startswith(ISA_PREFIXES))
    return []


def machine() -> dict:
    """``machine_info()`` with ``cpus`` (os.cpu_count) and ``isa_flags``."""
    return {**machine_info(), "cpus": os.cpu_count(), "isa_flags": isa_flags()}
