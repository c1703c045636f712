"""Two real `edgecls train --strategy multiworker` processes on 127.0.0.1, joined by TF_CONFIG."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

TINY = ["--arch", "tiny_cnn", "--weights", "none", "--img-size", "32", "--patience", "0"]


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def start_cluster(args_for, tmp_path):
    """Start worker 0 (the chief: no 'chief' task in the cluster) and worker 1, each with its TF_CONFIG.

    Each worker's temporary folder is a folder of the test, so its clean-up can be checked.
    """
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    procs = []
    for index in range(2):
        scratch = tmp_path / f"tmp{index}"
        scratch.mkdir(exist_ok=True)
        env = {**os.environ, "TMPDIR": str(scratch),
               "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        procs.append(subprocess.Popen([sys.executable, "-m", "edgecls", "train", *args_for(index)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs


def finish(procs, timeout=240):
    results = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for other in procs:
                other.kill()
            raise
        results.append((proc.returncode, out, err))
    return results


def test_two_workers_train_and_only_the_chief_writes(tmp_path, make_images):
    data = make_images(tmp_path / "data", per_class=16)
    runs = [tmp_path / "chief_run", tmp_path / "worker_run"]
    procs = start_cluster(lambda i: [str(data), "--out", str(runs[i]), "--strategy", "multiworker", "--epochs", "1",
                                     "--batch-size", "8", *TINY], tmp_path)
    (chief_rc, chief_out, chief_err), (worker_rc, worker_out, worker_err) = finish(procs)
    assert chief_rc == 0, chief_err[-3000:]
    assert worker_rc == 0, worker_err[-3000:]

    assert "worker 0 of 2 (chief)" in chief_out and "worker 1 of 2 (not chief)" in worker_out
    # The global batch of 8 is split between the two replicas, not given to each of them.
    assert "2 replica(s) in sync; global batch 8 = 4 per replica" in chief_out
    metrics = json.loads((runs[0] / "metrics.json").read_text())
    assert metrics["epochs_run"] == 1 and metrics["num_samples"] > 0
    for name in ("model.keras", "config.yaml", "history.csv", "plots/history.png", "classification_report.txt"):
        assert (runs[0] / name).is_file(), name
    assert "strategy: multiworker" in (runs[0] / "config.yaml").read_text()
    assert "top-1" in chief_out and "top-1" not in worker_out

    assert not runs[1].exists(), "a worker that is not the chief writes nothing into its --out"
    assert not any((tmp_path / "tmp1").iterdir()), "the worker removes its temporary folder"
    assert not list(runs[0].rglob(".tmp-*")) and not list(runs[0].rglob("epoch-*.keras"))


@pytest.mark.slow
def test_a_killed_cluster_resumes_from_the_chiefs_checkpoint(tmp_path, make_images):
    data = make_images(tmp_path / "data", per_class=40)
    run = tmp_path / "run"  # shared by both workers, as on a network file system
    base = [str(data), "--out", str(run), "--strategy", "multiworker", "--epochs", "3", "--batch-size", "4", *TINY]
    procs = start_cluster(lambda i: base, tmp_path)
    deadline = time.time() + 300
    while time.time() < deadline:  # kill both as soon as one epoch is on disk
        state = run / "state.json"
        if state.is_file() and json.loads(state.read_text())["epoch"] >= 1:
            break
        if any(proc.poll() is not None for proc in procs):
            pytest.fail(f"training ended before it could be killed: {[p.stderr.read()[-2000:] for p in procs]}")
        time.sleep(0.05)
    for proc in procs:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    completed = json.loads((run / "state.json").read_text())["epoch"]
    assert 1 <= completed < 3, "the kill must land mid-run for this test to mean anything"

    results = finish(start_cluster(lambda i: base + ["--resume"], tmp_path), timeout=300)
    for returncode, out, err in results:
        assert returncode == 0, err[-3000:]
        assert f"resuming after epoch {completed}" in out
    history = (run / "history.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in history[1:]] == ["1", "2", "3"]
    assert (run / "metrics.json").is_file()
