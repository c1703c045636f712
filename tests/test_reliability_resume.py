"""Issue 6, interruptions: a run killed at any moment continues with --resume to its planned epochs."""

from __future__ import annotations

import csv
import json
import random
import subprocess
import sys
import time

import pytest
from deploy_helpers import cli


def _epochs(run) -> list[str]:
    with open(run / "history.csv", newline="") as handle:
        return [row["epoch"] for row in csv.DictReader(handle)]


def _train_args(data, run, epochs: int) -> list[str]:
    return ["train", str(data), "--out", str(run), "--arch", "tiny_cnn", "--weights", "none", "--img-size", "32",
            "--epochs", str(epochs), "--batch-size", "4", "--patience", "0"]


def test_resume_of_a_run_killed_before_its_first_write_starts_it(tmp_path, make_images, capsys):
    # A kill while the images are decoded leaves the folder with the scan report and perhaps a
    # half-written temporary file, but no config.yaml: --resume must not call that "no run".
    data = make_images(tmp_path / "data", per_class=6)
    run = tmp_path / "run"
    run.mkdir()
    (run / "data_scan.json").write_text("{}")
    (run / ".tmp-abc123-config.yaml").write_text("data:\n  pa")
    code, out, err = cli([*_train_args(data, run, 1), "--resume"], capsys)
    assert code == 0, err
    assert "holds no run yet" in out
    assert _epochs(run) == ["1"]
    assert not list(run.rglob(".tmp-*"))


def test_resume_of_a_folder_that_does_not_exist_is_still_an_error(tmp_path, make_images, capsys):
    data = make_images(tmp_path / "data", per_class=2)
    code, out, err = cli([*_train_args(data, tmp_path / "typo", 1), "--resume"], capsys)
    assert code == 2 and "nothing to resume" in err and "does not exist" in err and "Traceback" not in err
    assert not (tmp_path / "typo").exists()


def _snapshot(run) -> str:
    state = run / "state.json"
    if not state.is_file():
        return "no state.json" + (" (config.yaml written)" if (run / "config.yaml").is_file() else "")
    data = json.loads(state.read_text())
    return f"epoch {data['epoch']}, finished {data['finished']}"


def _epoch(run) -> int:
    try:
        return json.loads((run / "state.json").read_text())["epoch"]
    except (OSError, ValueError, KeyError):
        return 0


def _shortest_epoch_seconds(run) -> float:
    # The first epoch also traces the graph; the shortest one is what a resumed epoch takes.
    with open(run / "history.csv", newline="") as handle:
        return min(float(row["epoch_seconds"]) for row in csv.DictReader(handle))


def _finished(run) -> bool:
    try:
        return bool(json.loads((run / "state.json").read_text())["finished"])
    except (OSError, ValueError, KeyError):
        return False


def _kill_when(proc, ready, delay, timeout: float = 180) -> bool:
    """SIGKILL ``proc`` ``delay()`` seconds after ``ready()`` holds; False if it ended first."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    else:
        time.sleep(delay())
    if proc.poll() is not None:
        proc.communicate()
        return False
    proc.kill()
    proc.communicate()
    return True


@pytest.mark.slow
def test_training_killed_at_random_moments_ends_with_the_planned_epochs(tmp_path, make_images):
    data = make_images(tmp_path / "data", per_class=40)
    run = tmp_path / "run"
    args = [sys.executable, "-m", "edgecls", *_train_args(data, run, 4), "--quiet"]
    args[args.index("--batch-size") + 1] = "2"  # more steps, so an epoch is long enough to land in
    rng = random.Random(6)
    moments = []

    def attempt(ready, delay):
        # A kill before the run folder exists leaves nothing to resume (--resume then says so, as a
        # guard against a mistyped --out), so the command is run again as it was, as a user would.
        proc = subprocess.Popen(args + (["--resume"] if run.exists() else []), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        killed = _kill_when(proc, ready, delay)
        moments.append(f"{'killed' if killed else 'ended'}: {_snapshot(run)}")

    # First while TensorFlow loads or the images are decoded (before any run file exists); then,
    # in each resumed process, at a random instant after the next epoch's state is on disk (inside
    # the following epoch or its checkpoint save); once all epochs are done, at a random instant of
    # the process that loads the best model, evaluates, plots and cleans up.
    attempt(lambda: True, lambda: rng.uniform(1.0, 4.5))
    while not _finished(run) and len(moments) < 12:
        target = _epoch(run) + 1
        if target > 4:
            attempt(lambda: True, lambda: rng.uniform(3.0, 7.0))
        else:
            attempt(lambda target=target: _epoch(run) >= target, lambda: rng.uniform(0.0, 1.0) * _shortest_epoch_seconds(run))
    print("kill moments:", *moments, sep="\n  ")  # shown with pytest -s: where the kills landed
    final = subprocess.run(args + ["--resume"], capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, (moments, final.stderr)
    assert sum(m.startswith("killed") for m in moments) >= 4, moments
    assert _epochs(run) == ["1", "2", "3", "4"], moments
    assert json.loads((run / "metrics.json").read_text())["epochs_run"] == 4
    assert not list(run.rglob(".tmp-*")), moments
    assert not list((run / "checkpoints").glob("*.keras")), "resume checkpoints are removed at the end"
