"""The device side on the Pi's architecture: the loopback sshd device (tests/ssh_device.py) with a Python
that is Raspberry Pi OS Bookworm's arm64 python3.11 under ``qemu-aarch64 -cpu cortex-a72``
(benchmarks/pi_emulation.py), for both device stacks. Slow (emulation, and a first run fetches
about 290 MB); run by hand:

    python -m pytest -m slow tests/test_devices_emulated.py -n 0
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import edgecls

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

pytestmark = pytest.mark.slow

WORK = Path.home() / ".cache" / "edgecls" / "pi-emulation"
RUNTIME = {"a": "tflite-runtime", "b": "ai-edge-litert"}


@pytest.fixture(scope="module", params=sorted(RUNTIME))
def emulated_python(request, tmp_path_factory):
    import pi_emulation

    folder = tmp_path_factory.mktemp(f"emulated-{request.param}")
    python = pi_emulation.emulated_device_python(WORK, request.param, folder / "bin", home=folder / "home")
    return request.param, python


def test_device_check_reports_the_emulated_pi_4(ssh_device, emulated_python):
    stack, python = emulated_python
    found = edgecls.check_device("device", device_python=str(python), ssh_config=ssh_device.config)
    assert found.machine == "aarch64" and found.cpu == "Cortex-A72"
    assert found.features["asimd"] and not found.features["asimddp"] and not found.features["i8mm"]
    assert found.runtimes[RUNTIME[stack]]
    assert [line for line in found.missing if not line.startswith("optional:")] == []  # onnxruntime is not in the stack


def test_bench_on_the_emulated_device_gives_the_hosts_top1(ssh_device, emulated_python, deploy_run, tmp_path,
                                                           make_images):
    _, python = emulated_python
    data = make_images(tmp_path / "test", per_class=4)
    models = [deploy_run / "exports" / "int8.tflite", deploy_run / "exports" / "float32.tflite"]
    settings = {"runs": 3, "rounds": 1, "warmup": 1, "e2e_images": 1, "verbose": 0}
    here = edgecls.bench(models, data=data, runtime="tflite", **settings)
    there = edgecls.bench(models, data=data, device="device", device_python=str(python), ssh_config=ssh_device.config,
                          **settings)
    for local, remote in zip(here, there):
        assert remote["where"]["machine"] == "aarch64" and remote["where"]["cpu"] == "Cortex-A72"
        assert remote["images"] == local["images"] == 12
        assert remote["accuracy"] == local["accuracy"] and remote["top5_accuracy"] == local["top5_accuracy"]


def test_bench_parity_pairs_the_emulated_devices_runtime_with_the_hosts(ssh_device, emulated_python, deploy_run,
                                                                          tmp_path, make_images):
    from edgecls.benchmarking.parity import pairs

    stack, python = emulated_python
    data = make_images(tmp_path / "test", per_class=4)
    model = deploy_run / "exports" / "int8.tflite"
    records = edgecls.bench([model], data=data, runtime="tflite", device="device", device_python=str(python),
                            ssh_config=ssh_device.config, parity_table=True, runs=3, rounds=1, warmup=1, e2e_images=1,
                            verbose=0)
    (pair,) = [p for p in pairs(records) if p["b"]["runtime"].endswith(" on device")]
    backend = RUNTIME[stack].replace("-", "_")
    assert pair["a"]["runtime"] == "tflite" and pair["b"]["runtime"].startswith(backend)
    print(f"host LiteRT (x86) vs {pair['b']['runtime']} (emulated Cortex-A72), {model.name}: top-1 agreement "
          f"{pair['agreement']:.4f} on {pair['images']} images, max |Δp| {pair['max_abs_dp']:.2e}")
    assert pair["images"] == 12 and pair["agreement"] == 1.0
