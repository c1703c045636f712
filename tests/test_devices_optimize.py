"""``edgecls optimize --device``: candidates timed on a real sshd "device" (tests/ssh_device.py), accuracy on the host.

The search sees the device through one OpenSSH connection; the leaderboard, best.json and the
CSV say where every latency was taken. A connection dropped mid-search (the device's sshd
sessions killed while pi_infer.py runs there) ends with one line, keeps the leaderboard, and
``--resume`` goes on without rebuilding what was built.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
from deploy_helpers import assert_one_error_line, cli

import edgecls
from edgecls.devices.session import Device
from edgecls.errors import DeviceError
from edgecls.searching.variant_search import optimize_run

FAST = dict(calibration=16, rounds=2, runs=5, warmup=1, qat_epochs=0, verbose=0)


@pytest.fixture
def device_run_copy(colour_run, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(colour_run, target, ignore=shutil.ignore_patterns("exports"))
    return target


def _device(server) -> dict:
    return {"device": "device", "ssh_config": server.config, "device_python": str(server.python)}


def test_optimize_times_every_candidate_on_the_device_and_says_so(ssh_device, device_run_copy):
    result = optimize_run(device_run_copy, max_drop=0.5, **FAST, **_device(ssh_device))
    out = device_run_copy / "exports" / "optimize"
    data = json.loads((out / "leaderboard.json").read_text())
    assert data["where"]["on"] == "device" and data["status"] == "done"
    assert data["where"]["cpu"] and data["where"]["machine"]
    assert [r["variant"] for r in data["candidates"]][:4] == ["float32", "float16", "dynamic", "int8"]
    for record in data["candidates"]:
        assert record["where"] == data["where"] and record["latency_ms"] > 0
        assert record["latency_measured"].endswith("on device")
    with open(out / "leaderboard.csv", newline="") as handle:
        assert all(row["where"].startswith("device: ") for row in csv.DictReader(handle))
    assert result.within_budget and result.best_path == device_run_copy / "exports" / "best.tflite"
    best = json.loads((device_run_copy / "exports" / "best.json").read_text())
    assert best["optimize"]["latency_where"]["on"] == "device"
    assert best["optimize"]["chosen"] == result.chosen["variant"]
    page = edgecls.report(device_run_copy).read_text()  # the report says where the search timed
    assert "latency timed on" in page and f"device: {data['where']['cpu']}" in page
    # the same bytes were timed there: the device cache holds the candidates' files by content
    cache = ssh_device.home / ".cache" / "edgecls" / "device"
    there = {p.name for p in cache.rglob("*.tflite")}
    assert {f"{r['variant']}.tflite" for r in data["candidates"]} <= there


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def _sshd_sessions(server) -> list[int]:
    """The per-connection sshd processes under the test server's listener."""
    return [int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit() and _parent(int(e.name)) == server.process.pid]


def _under(pid: int, ancestor: int) -> bool:
    while pid > 1:
        pid = _parent(pid)
        if pid == ancestor:
            return True
    return False


def _drop_when_pi_infer_runs(server, stop: threading.Event) -> None:
    """Kill the device's sshd sessions as soon as pi_infer.py is running there: a real dropped connection."""
    while not stop.is_set():
        for entry in Path("/proc").iterdir():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0") if entry.name.isdigit() else []
            except OSError:
                continue
            # The device's Python itself, not the local ssh client whose argv holds the same words: killing the
            # sessions before the client reached the shared connection would let ssh connect afresh.
            if argv and Path(argv[0].decode(errors="replace")).name.startswith("python") and \
                    any(a.endswith(b"pi_infer.py") for a in argv) and b"--bench" in argv and \
                    _under(int(entry.name), server.process.pid):
                for pid in _sshd_sessions(server):
                    os.kill(pid, signal.SIGKILL)
                return
        time.sleep(0.005)


def test_a_device_lost_mid_search_keeps_the_leaderboard_and_resume_goes_on(ssh_device, device_run_copy, monkeypatch,
                                                                            capsys):
    real = Device.time_models
    calls = []

    def dropped_on_the_third_timing(self, *args, **kwargs):
        calls.append(1)
        if len(calls) != 3:
            return real(self, *args, **kwargs)
        stop = threading.Event()
        watcher = threading.Thread(target=_drop_when_pi_infer_runs, args=(ssh_device, stop), daemon=True)
        watcher.start()
        try:
            return real(self, *args, **kwargs)
        finally:
            stop.set()
            watcher.join(5)

    monkeypatch.setattr(Device, "time_models", dropped_on_the_third_timing)
    args = ["optimize", device_run_copy, "--max-drop", "0.5", "--device", "device", "--ssh-config", ssh_device.config,
            "--device-python", ssh_device.python, "--quiet"]
    code, out, err = cli(args, capsys)
    assert_one_error_line(code, out, err, "was lost while running pi_infer.py --bench")
    assert "run again with --resume" in err
    board = device_run_copy / "exports" / "optimize" / "leaderboard.json"
    data = json.loads(board.read_text())
    assert data["status"] == "device lost"
    # float32, float16 timed; dynamic built and measured on the host but its timing was cut off
    assert [r["variant"] for r in data["candidates"]] == ["float32", "float16", "dynamic"]
    assert [r["latency_ms"] is None for r in data["candidates"]] == [False, False, True]
    built = {r["variant"]: Path(r["path"]).stat().st_mtime_ns for r in data["candidates"]}

    monkeypatch.setattr(Device, "time_models", real)
    code, out, err = cli([*args, "--resume", "--json"], capsys)
    assert code == 0, err
    records = json.loads(out)
    assert {r["variant"] for r in records if r.get("resumed")} == set(built)
    assert all(r["latency_ms"] > 0 and r["where"]["on"] == "device" for r in records)
    assert {name: Path(r["path"]).stat().st_mtime_ns for r in records if (name := r["variant"]) in built} == built
    assert json.loads(board.read_text())["status"] == "done"


def test_device_problems_before_the_search_are_one_line(ssh_device, device_run_copy, capsys):
    base = ["optimize", device_run_copy, "--ssh-config", ssh_device.config, "--device-python", ssh_device.python]
    code, out, err = cli([*base, "--device", "unknown-host"], capsys)
    assert_one_error_line(code, out, err, "run `ssh unknown-host` once")
    code, out, err = cli([*base, "--device", "device", "--runtime", "onnx"], capsys)
    assert_one_error_line(code, out, err, "--runtime onnx cannot run there")
    with pytest.raises(DeviceError, match="refused the login"):
        optimize_run(device_run_copy, device="stranger", ssh_config=ssh_device.config, **FAST)
    assert not (device_run_copy / "exports" / "optimize" / "leaderboard.json").exists()
