"""The device in the loop, against a real OpenSSH server on 127.0.0.1 (tests/ssh_device.py), never a mock.

The "device" is this machine behind sshd, with a Python in which tensorflow cannot be imported
and its own HOME: device check, bench rows shaped as a local bench with the same top-1, a repeat
run that copies nothing, an unknown host key, a refused key, hostile names, a remote timeout.
"""

from __future__ import annotations

import json
import os
import platform
import pwd
import shutil
import stat
import time
from pathlib import Path

import pytest
from deploy_helpers import assert_one_error_line, cli
from ssh_device import device_python

import edgecls
from edgecls.devices.address import parse_device
from edgecls.devices.machine_probe import host_description
from edgecls.devices.readiness import missing_lines
from edgecls.devices.session import Device
from edgecls.errors import DeviceError

HOSTILE = "it's $HOME; \"a b\" `x` $(touch PWNED)"


def _session(server, **kwargs) -> Device:
    return Device("device", ssh_config=server.config, python=str(server.python), **kwargs)


def _bench_args(server):
    return {"runs": 5, "rounds": 2, "warmup": 1, "e2e_images": 2, "verbose": 0}


def _device_bench(server, models, data, **kwargs):
    return edgecls.bench(models, data=data, device="device", ssh_config=server.config,
                         device_python=str(server.python), **_bench_args(server), **kwargs)


def test_device_check_reports_the_machine_and_its_runtimes(ssh_device, capsys):
    code, out, err = cli(["device", "check", "device", "--ssh-config", ssh_device.config, "--device-python",
                          ssh_device.python, "--json"], capsys)
    assert code == 0, err
    found = json.loads(out)
    here = host_description()
    assert found["machine"] == platform.machine() and found["cpu"] == here["cpu"]
    assert found["features"] == here["features"]
    assert {"avx2", "avx512_vnni", "avx_vnni"} <= set(found["features"]) or {"asimd", "asimddp"} <= set(found["features"])
    assert found["cores"] == os.cpu_count() and found["memory_mb"] > 0
    assert found["runtimes"]["ai-edge-litert"] and found["runtimes"]["numpy"] and found["missing"] == []
    cache = Path(found["cache"])
    assert cache == (ssh_device.home / ".cache" / "edgecls" / "device").resolve()
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    code, out, err = cli(["device", "check", "device", "--ssh-config", ssh_device.config, "--device-python",
                          ssh_device.python], capsys)
    assert code == 0 and out.splitlines()[0].startswith("device   device") and "cpu      " in out


def test_the_device_python_cannot_import_tensorflow(ssh_device):
    with _session(ssh_device) as device:
        done = device.connection.run([device.python, "-c", "import tensorflow"], timeout=30)
    assert done.returncode != 0 and b"blocked on the device: tensorflow" in done.stderr


def test_a_missing_runtime_is_one_pip_line_per_piece():
    described = {"python": "3.11.2", "runtimes": {"ai-edge-litert": None, "tflite-runtime": None, "numpy": "1.24",
                                                   "pillow": None, "onnxruntime": None}}
    lines = missing_lines(described, "/home/pi/venv/bin/python")
    assert lines == [
        "needed: a TFLite runtime; run on the device: /home/pi/venv/bin/python -m pip install tflite-runtime==2.14.0 "
        "'numpy<2'",
        "needed: pillow (images); run on the device: /home/pi/venv/bin/python -m pip install pillow",
        "optional: onnxruntime (only for .onnx models); run on the device: /home/pi/venv/bin/python -m pip install "
        "onnxruntime"]
    described["python"] = "3.12.1"
    assert "pip install ai-edge-litert" in missing_lines(described)[0]


def test_bench_on_the_device_gives_rows_shaped_as_a_local_bench_with_the_same_top1(ssh_device, deploy_run, tmp_path,
                                                                                   make_images):
    data = make_images(tmp_path / "test", per_class=4)
    models = [deploy_run / "exports" / "int8.tflite", deploy_run / "exports" / "float32.tflite"]
    local = edgecls.bench(models, data=data, runtime="tflite", **_bench_args(ssh_device))
    remote = _device_bench(ssh_device, models, data)
    assert [r["model"] for r in remote] == [r["model"] for r in local] == [str(m) for m in models]
    for here, there in zip(local, remote):
        assert set(there) == set(here), set(there) ^ set(here)
        assert set(there["where"]) == set(here["where"])
        assert here["where"]["on"] == "host" and there["where"]["on"] == "device" and there["source"] == "device"
        assert there["where"]["cpu"] == here["where"]["cpu"] and there["where"]["cpu_flags"] == here["where"]["cpu_flags"]
        assert there["images"] == here["images"] == 12
        assert there["accuracy"] == here["accuracy"] and there["top5_accuracy"] == here["top5_accuracy"]
        assert there["name"] == here["name"] and there["rounds"]["count"] == 2 and there["latency_ms"]["p50"] > 0
    assert any("copied" in note for note in remote.notes)


def test_a_repeat_run_copies_nothing(ssh_device, deploy_run, tmp_path, make_images):
    data = make_images(tmp_path / "test", per_class=2)
    model = deploy_run / "exports" / "int8.tflite"
    first = _device_bench(ssh_device, [model], data)
    cache = ssh_device.home / ".cache" / "edgecls" / "device"
    before = {p: p.stat().st_mtime_ns for p in cache.rglob("*")}
    again = _device_bench(ssh_device, [model], data)
    assert any(note.startswith("note: nothing to copy") for note in again.notes), again.notes
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*")} == before
    assert again[0]["accuracy"] == first[0]["accuracy"]
    with _session(ssh_device) as device:  # without --data: one synthetic image, copied once
        device.time_models([model], runs=2, rounds=1, warmup=0, e2e_images=0)
        device.time_models([model], runs=2, rounds=1, warmup=0, e2e_images=0)
        assert device.copied_files <= 1


def test_hostile_names_reach_the_device_quoted(ssh_device, deploy_run, tmp_path, make_images):
    with _session(ssh_device) as device:
        done = device.connection.run([device.python, "-c", "import sys, json; print(json.dumps(sys.argv[1:]))",
                                      HOSTILE, "a;b", "$(id)", "'", '"', " "], timeout=30)
    assert json.loads(done.stdout) == [HOSTILE, "a;b", "$(id)", "'", '"', " "]

    # A model, its classes and the device's Python, all with names a shell would act on.
    classes = ("it's", "$HOME; x", "a b `y`")
    folder = tmp_path / HOSTILE
    folder.mkdir()
    model = folder / f"{HOSTILE}.tflite"
    shutil.copy(deploy_run / "exports" / "int8.tflite", model)
    sidecar = json.loads((deploy_run / "exports" / "int8.json").read_text())
    model.with_suffix(".json").write_text(json.dumps({**sidecar, "labels": list(classes)}))
    data = make_images(tmp_path / "data", classes=classes, per_class=3)
    python = device_python(tmp_path / "it's a $python; dir", ssh_device.home)
    local = edgecls.bench([model], data=data, runtime="tflite", **_bench_args(ssh_device))
    remote = edgecls.bench([model], data=data, device=ssh_device.url, ssh_config=ssh_device.config,
                           device_python=str(python), **_bench_args(ssh_device))
    assert remote[0]["accuracy"] == local[0]["accuracy"] and remote[0]["images"] == 9
    assert remote[0]["where"]["on"] == ssh_device.url
    login_home = Path(pwd.getpwuid(os.getuid()).pw_dir)  # where the remote shell starts
    assert not list(ssh_device.home.rglob("PWNED")) and not (login_home / "PWNED").exists()


def test_an_unknown_host_key_is_one_line_saying_to_ssh_once(ssh_device, capsys):
    code, out, err = cli(["device", "check", "unknown-host", "--ssh-config", ssh_device.config], capsys)
    assert_one_error_line(code, out, err, "run `ssh unknown-host` once")
    assert "known_hosts" not in err  # nothing was added to any known_hosts file
    assert (ssh_device.folder / "empty_known_hosts").read_text() == ""


def test_a_refused_key_is_one_line(ssh_device, deploy_run, tmp_path, capsys):
    code, out, err = cli(["bench", deploy_run / "exports" / "int8.tflite", "--device", "stranger",
                          "--ssh-config", ssh_device.config], capsys)
    assert_one_error_line(code, out, err, "stranger refused the login")


def test_a_command_past_its_timeout_is_killed_on_the_device(ssh_device, tmp_path):
    pid_file = tmp_path / "remote.pid"
    script = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(120)"
    start = time.monotonic()
    with _session(ssh_device) as device, pytest.raises(DeviceError, match="longer than 2 s and was stopped there"):
        device.connection.run([device.python, "-c", script], timeout=2, what="a sleeper")
    assert time.monotonic() - start < 20
    pid = int(pid_file.read_text())
    status = Path(f"/proc/{pid}/status")
    assert not status.exists() or "\nState:\tZ" in status.read_text()  # gone (or a zombie nobody reaped yet)


@pytest.mark.parametrize(("text", "host", "user", "port"), [
    ("ssh://pi@raspberrypi.local:2222", "raspberrypi.local", "pi", 2222),
    ("ssh://raspberrypi", "raspberrypi", None, None),
    ("ssh://[::1]:22", "::1", None, 22),
    ("mypi", "mypi", None, None),
    ("pi@10.0.0.7", "10.0.0.7", "pi", None),
])
def test_device_addresses(text, host, user, port):
    address = parse_device(text)
    assert (address.host, address.user, address.port, str(address)) == (host, user, port, text)


@pytest.mark.parametrize("text", ["-oProxyCommand=touch x", "ssh://-oProxyCommand=x", "http://pi", "ssh://pi/path",
                                  "ssh://pi:99999", "two words", "ssh://pi:secret@host", ""])
def test_what_is_not_a_device_is_a_one_line_error(text):
    with pytest.raises(DeviceError):
        parse_device(text)


def test_bench_parity_with_a_device_pairs_its_answers_with_the_hosts(ssh_device, deploy_run, tmp_path, make_images):
    data = make_images(tmp_path / "test", per_class=4)
    models = [deploy_run / "exports" / "int8.tflite", deploy_run / "exports" / "float32.tflite"]
    records = _device_bench(ssh_device, models, data, runtime="tflite", parity_table=True)
    host = [r for r in records if r["source"] == "host"]
    there = [r for r in records if r["source"] == "device"]
    assert [r["model"] for r in host] == [r["model"] for r in there] == [str(m) for m in models]
    assert all("answers" not in r for r in records)  # taken out of the rows once compared
    from edgecls.benchmarking.parity import pairs

    found = {(p["a"]["model"], p["a"]["runtime"], p["b"]["model"], p["b"]["runtime"].split(" on ")[-1]): p
             for p in pairs(records)}
    for model in map(str, models):  # the same file on the host's LiteRT and on the device: the same answers
        same = found[(model, "tflite", model, "device")]
        assert same["images"] == 12 and same["agreement"] == 1.0 and same["max_abs_dp"] < 1e-5
        assert same["b"]["runtime"].startswith("ai_edge_litert") or same["b"]["runtime"].startswith("tflite_runtime")
    int8, float32 = map(str, models)
    assert (int8, "tflite", float32, "device") in found  # one model's two exports, across the two machines
    for row in host:  # a pair with the device is the device row's: the host's rows keep the host's pairs
        assert all(" on " not in pair["b"]["runtime"] for pair in row["parity"])
    assert all(pair["b"]["runtime"].endswith(" on " + there[0]["where"]["on"]) for row in there for pair in row["parity"])
