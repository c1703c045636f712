"""TensorBoard logs in RUN/tensorboard/: training, its resumption, QAT and pruning fine-tuning; --no-tensorboard."""

from __future__ import annotations

import csv

import pytest
from deploy_helpers import cli

SCALARS = {"epoch_loss", "epoch_accuracy"}


def read_scalars(folder) -> dict[str, dict[int, float]]:
    """Every scalar in the event files under ``folder``: {tag: {step: value}}, later files winning."""
    from edgecls.tf import tf

    scalars: dict[str, dict[int, float]] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                number = float(tf.make_ndarray(value.tensor)) if value.HasField("tensor") else value.simple_value
                scalars.setdefault(value.tag, {})[int(event.step)] = number
    return scalars


def history(run) -> list[dict]:
    with open(run / "history.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def train_args(data, run, epochs: int, *extra) -> list:
    return ["train", data, "--out", run, "--arch", "tiny_cnn", "--weights", "none", "--img-size", "32",
            "--epochs", epochs, "--batch-size", "8", "--patience", "0", "--quiet", *extra]


@pytest.fixture(scope="module")
def tensorboard_data(tmp_path_factory):
    import numpy as np
    from PIL import Image

    root = tmp_path_factory.mktemp("tb") / "data"
    rng = np.random.default_rng(0)
    for index, colour in enumerate([(220, 40, 40), (40, 200, 40), (40, 40, 220)]):
        (root / f"class{index}").mkdir(parents=True)
        for n in range(12):
            pixels = np.clip(rng.normal(colour, 30, (20, 20, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / f"class{index}" / f"{n}.png")
    return root


@pytest.fixture(scope="module")
def tensorboard_run(tensorboard_data, tmp_path_factory):
    import edgecls

    out = tmp_path_factory.mktemp("tb") / "run"
    edgecls.train(tensorboard_data, out, arch="tiny_cnn", weights="none", img_size=32, epochs=2, batch_size=8, patience=0,
                  verbose=0)
    return out


def test_training_logs_loss_accuracy_and_learning_rate_per_epoch(tensorboard_run):
    rows = history(tensorboard_run)
    train = read_scalars(tensorboard_run / "tensorboard" / "train")
    validation = read_scalars(tensorboard_run / "tensorboard" / "validation")
    assert SCALARS | {"epoch_learning_rate"} <= set(train)
    assert SCALARS <= set(validation)
    for tag, column in (("epoch_loss", "loss"), ("epoch_accuracy", "accuracy"), ("epoch_learning_rate", "lr")):
        assert train[tag] == pytest.approx({i: float(r[column]) for i, r in enumerate(rows)}, rel=1e-4), tag
    for tag, column in (("epoch_loss", "val_loss"), ("epoch_accuracy", "val_accuracy")):
        assert validation[tag] == pytest.approx({i: float(r[column]) for i, r in enumerate(rows)}, rel=1e-4), tag
    # The warm-up schedule moves the rate between epochs; a constant would mean a stale value.
    assert train["epoch_learning_rate"][0] != train["epoch_learning_rate"][1]


def test_no_tensorboard_writes_none_and_the_run_remembers(tensorboard_data, tmp_path, capsys):
    out = tmp_path / "quiet-run"
    code, _, err = cli(train_args(tensorboard_data, out, 1, "--no-tensorboard"), capsys)
    assert code == 0, err
    assert not (out / "tensorboard").exists()
    assert "tensorboard: false" in (out / "config.yaml").read_text()


def test_a_resumed_run_goes_on_logging_into_the_same_folder(tensorboard_data, tmp_path, capsys, monkeypatch):
    import edgecls
    from edgecls.training import callbacks

    class Killed(Exception):
        pass

    original = callbacks.RunCheckpointer.on_epoch_end

    def die_after_the_first_epoch(self, epoch, logs=None):
        original(self, epoch, logs)
        raise Killed  # like a kill: fit() never reaches on_train_end, so nothing closes the writers

    out = tmp_path / "run"
    monkeypatch.setattr(callbacks.RunCheckpointer, "on_epoch_end", die_after_the_first_epoch)
    with pytest.raises(Killed):
        edgecls.train(tensorboard_data, out, arch="tiny_cnn", weights="none", img_size=32, epochs=3, batch_size=8, patience=0,
                      verbose=0)
    assert set(read_scalars(out / "tensorboard" / "train")["epoch_loss"]) == {0}, "epoch 1 reached the disk"
    monkeypatch.setattr(callbacks.RunCheckpointer, "on_epoch_end", original)

    code, _, err = cli([*train_args(tensorboard_data, out, 3), "--resume"], capsys)
    assert code == 0, err
    rows = history(out)
    for name in ("train", "validation"):
        scalars = read_scalars(out / "tensorboard" / name)
        assert set(scalars["epoch_loss"]) == {0, 1, 2}, name
    loss = read_scalars(out / "tensorboard" / "train")["epoch_loss"]
    assert loss == pytest.approx({i: float(r["loss"]) for i, r in enumerate(rows)}, rel=1e-4)


def test_qat_and_pruning_fine_tuning_log_beside_training(tensorboard_run, capsys):
    code, _, err = cli(["quantize", tensorboard_run, "--qat", "--epochs", "1", "--quiet"], capsys)
    assert code == 0, err
    qat = read_scalars(tensorboard_run / "tensorboard" / "qat" / "train")
    assert SCALARS | {"epoch_learning_rate"} <= set(qat) and set(qat["epoch_loss"]) == {0}
    assert SCALARS <= set(read_scalars(tensorboard_run / "tensorboard" / "qat" / "validation"))

    code, _, err = cli(["prune", tensorboard_run, "--epochs", "1", "--no-tensorboard", "--quiet"], capsys)
    assert code == 0, err
    assert not (tensorboard_run / "tensorboard" / "prune").exists()
    code, _, err = cli(["prune", tensorboard_run, "--epochs", "1", "--quiet"], capsys)
    assert code == 0, err
    pruned = read_scalars(tensorboard_run / "tensorboard" / "prune" / "train")
    # Pruning fine-tunes at a constant rate, which Keras alone would not log.
    assert pruned["epoch_learning_rate"] == pytest.approx({0: 1e-4})
    assert SCALARS <= set(pruned)


def test_quantize_no_tensorboard_writes_no_qat_logs(tensorboard_run, tmp_path, capsys):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tensorboard_run, copy, ignore=shutil.ignore_patterns("tensorboard", "exports"))
    code, _, err = cli(["quantize", copy, "--qat", "--epochs", "1", "--no-tensorboard", "--quiet"], capsys)
    assert code == 0, err
    assert not (copy / "tensorboard").exists()
