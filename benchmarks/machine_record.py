"""Where a timing was taken: edgecls' machine record, the core count and the CPU's vector instruction sets.

The CPU model alone does not say which kernels TensorFlow and XNNPACK pick (a VM may hide AVX-512,
VNNI or bfloat16 from its guest); the flags do. Both come from the probe ``edgecls device check``
runs on a device (:mod:`edgecls.devices.machine_probe`), so host and device records agree.
"""

from __future__ import annotations

from edgecls.benchmarking.harness import machine_info
from edgecls.devices.machine_probe import host_description, where_text


def machine() -> dict:
    """``machine_info()`` with ``cpus`` (cores), ``isa_flags`` (the SIMD flags) and the kernel-deciding ``features``."""
    described = host_description()
    return {**machine_info(), "cpus": described["cores"], "isa_flags": described["cpu_flags"],
            "features": described["features"]}


def text(m: dict) -> str:
    """A machine record in words: "Intel(R) Xeon(R) Processor (x86_64, 2 cores; avx2 avx512f avx512_vnni)"."""
    if not m.get("isa_flags"):
        return f"{m.get('cpu') or 'CPU not recorded'} (ISA flags not recorded)"
    where = {"on": "", "cpu": m.get("cpu"), "machine": m.get("machine"), "cores": m.get("cpus"), "cpu_flags": m["isa_flags"]}
    return where_text(where).removeprefix("?: ")
