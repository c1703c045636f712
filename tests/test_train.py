"""Training end to end: the run folder, refusing to overwrite, resuming after kill -9, two phases."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from edgecls.errors import DataError, EdgeclsError
from edgecls.training.trainer import prepare_run_dir, train

RUN_FILES = ("config.yaml", "model.keras", "labels.txt", "history.csv", "metrics.json", "data_scan.json",
             "skipped_files.txt", "classification_report.txt", "classification_report.json", "misclassified.csv",
             "plots/history.png", "plots/confusion_matrix.png")


def read_history(run):
    with open(run / "history.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_train_writes_a_complete_run_folder(tmp_path, make_images, tiny_config):
    data = make_images(tmp_path / "data", per_class=12)
    (data / "a" / "notes.txt").write_text("not an image")
    (data / "b" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    result = train(tiny_config(data), tmp_path / "run", verbose=0)
    run = result.run_dir
    for name in RUN_FILES:
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert metrics["num_samples"] > 0 and metrics["epochs_run"] == 2
    assert (run / "labels.txt").read_text().split() == ["a", "b", "c"]
    assert [row["epoch"] for row in read_history(run)] == ["1", "2"]
    skipped = (run / "skipped_files.txt").read_text()
    assert "notes.txt" in skipped and "broken.jpg" in skipped
    assert "image_size" not in (run / "config.yaml").read_text()
    assert "img_size: 32" in (run / "config.yaml").read_text()


def test_existing_run_is_refused_then_replaced_with_force(tmp_path, make_images, tiny_config):
    data = make_images(tmp_path / "data", per_class=8)
    config = tiny_config(data, epochs=1)
    train(config, tmp_path / "run", verbose=0)
    with pytest.raises(EdgeclsError, match="already holds a run"):
        train(config, tmp_path / "run", verbose=0)
    train(config, tmp_path / "run", force=True, verbose=0)
    assert len(read_history(tmp_path / "run")) == 1


def test_single_class_and_empty_folders_are_data_errors(tmp_path, make_images, tiny_config):
    one = make_images(tmp_path / "one", classes=("only",), per_class=5)
    with pytest.raises(DataError, match="one class"):
        train(tiny_config(one), tmp_path / "run1", verbose=0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError):
        train(tiny_config(tmp_path / "empty"), tmp_path / "run2", verbose=0)
    with pytest.raises(DataError, match="not found|does not exist"):
        train(tiny_config(tmp_path / "missing"), tmp_path / "run3", verbose=0)


def test_two_phase_transfer_learning_with_a_local_weights_file(tmp_path, make_images, tiny_config):
    from edgecls.tf import keras

    donor = keras.applications.MobileNetV3Small(input_shape=(32, 32, 3), include_top=False, weights=None,
                                               alpha=0.75)
    weights = tmp_path / "base.h5"
    donor.save_weights(weights)
    data = make_images(tmp_path / "data", per_class=10)
    config = tiny_config(data, epochs=3, head_epochs=1, fine_tune_layers=5)
    config.model.arch, config.model.weights, config.model.alpha = "mobilenet_v3_small", str(weights), 0.75
    train(config, tmp_path / "run", verbose=0)
    phases = [row["phase"] for row in read_history(tmp_path / "run")]
    assert phases == ["head", "fine_tune", "fine_tune"]


def _run_cli(args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "edgecls", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def test_resume_after_kill_9_completes_the_planned_epochs(tmp_path, make_images):
    data = make_images(tmp_path / "data", per_class=40)
    run = tmp_path / "run"
    args = ["train", str(data), "--out", str(run), "--arch", "tiny_cnn", "--weights", "none", "--img-size", "32",
            "--epochs", "4", "--batch-size", "4", "--patience", "0", "--quiet"]
    proc = _run_cli(args)
    deadline = time.time() + 240
    while time.time() < deadline:  # kill as soon as one epoch is safely on disk
        state = run / "state.json"
        if state.is_file() and json.loads(state.read_text())["epoch"] >= 1:
            break
        if proc.poll() is not None:
            pytest.fail(f"training ended before it could be killed: {proc.stderr.read()}")
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    completed = json.loads((run / "state.json").read_text())["epoch"]
    assert 1 <= completed < 4, "the kill must land mid-run for this test to mean anything"
    assert not (run / "metrics.json").exists()

    # Without --resume the half-finished run is refused, not overwritten (checked in-process: the
    # CLI's exit code 2 for such errors is test_cli's; a third TensorFlow process costs seconds).
    with pytest.raises(EdgeclsError, match="--resume"):
        prepare_run_dir(run, resume=False, force=False)

    resumed = _run_cli(args + ["--resume"])
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert f"resuming after epoch {completed}" in out
    assert [row["epoch"] for row in read_history(run)] == ["1", "2", "3", "4"]
    assert (run / "metrics.json").is_file()
    assert not list(run.rglob(".tmp-*")), "no temporary files are left behind"


# Slow (30 s): learning real images is this test's own; its code paths run in the default suite —
# `edgecls train` in a real process (test_resume_after_kill_9_...), archives (test_data_archive.py),
# the run folder (test_train_writes_a_complete_run_folder), evaluate (test_evaluate_json in test_cli.py).
@pytest.mark.slow
def test_cifar10_mini_end_to_end_train_and_evaluate(tmp_path, cifar10_mini):
    run = tmp_path / "cifar"
    env = {**os.environ}
    proc = _run_cli(["train", str(cifar10_mini), "--out", str(run), "--arch", "simple_cnn", "--weights", "none",
                     "--img-size", "32", "--epochs", "3", "--batch-size", "64", "--quiet"], env=env)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["num_samples"] == 500  # the archive's own test/ folder: 50 per class
    assert metrics["accuracy"] > 0.2, "3 epochs on 2,000 images must beat chance (0.1) clearly"
    assert "val carved from train" in metrics["split_source"]

    proc = _run_cli(["evaluate", str(run), "--data", str(cifar10_mini)], env=env)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    evaluated = json.loads((run / "eval" / "metrics.json").read_text())
    assert evaluated["num_samples"] == 500
    assert abs(evaluated["accuracy"] - metrics["accuracy"]) < 1e-6
    assert "top-1" in out
