"""Fixtures shared by the test suite. Keep each one small, documented and fast."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from components import missing
from deploy_helpers import import_pi_infer, write_deploy_run
from PIL import Image
from postgres_server import postgres_unavailable, start_postgres
from ssh_device import sshd_unavailable, start_sshd


@pytest.fixture
def make_images():
    """Factory writing small random-colour images as class folders; returns the root folder.

    ``make_images(root, classes=("a", "b", "c"), per_class=12, size=(20, 16))`` writes
    ``root/<class>/img_<i>.jpg|png`` (JPEG and PNG alternate), ``size`` being (width, height)
    as in PIL. Colours are seeded, so every run writes the same pixels.
    """
    seeds = itertools.count()

    def make(root, classes=("a", "b", "c"), per_class=12, size=(20, 16)) -> Path:
        root = Path(root)
        rng = np.random.default_rng(next(seeds))
        width, height = size
        for name in classes:
            folder = root / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                colour = rng.integers(0, 256, 3)
                noise = rng.integers(-20, 21, (height, width, 3))
                pixels = np.clip(colour + noise, 0, 255).astype(np.uint8)
                suffix = ".jpg" if i % 2 == 0 else ".png"
                Image.fromarray(pixels).save(folder / f"img_{i:03d}{suffix}")
        return root

    return make


SHARED_DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
CIFAR10_MINI = SHARED_DATASETS / "cifar10-mini.tar.gz"


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Decoded-image and archive caches go to a per-session folder, never to ~/.cache."""
    import os

    previous = os.environ.get("EDGECLS_CACHE")
    os.environ["EDGECLS_CACHE"] = str(tmp_path_factory.mktemp("edgecls-cache"))
    yield
    if previous is None:
        os.environ.pop("EDGECLS_CACHE", None)
    else:
        os.environ["EDGECLS_CACHE"] = previous


@pytest.fixture
def cifar10_mini() -> Path:
    if not CIFAR10_MINI.is_file():
        missing(f"{CIFAR10_MINI} is absent (the shared datasets sit beside the repository in CI)")
    return CIFAR10_MINI


@pytest.fixture
def tiny_config():
    """A RunConfig that trains tiny_cnn at 32x32 in seconds."""
    from edgecls.config import RunConfig

    def make(data_path, **train_overrides):
        config = RunConfig()
        config.data.path = str(data_path)
        config.data.img_size = 32
        config.model.arch = "tiny_cnn"
        config.model.weights = "none"
        config.train.epochs = 2
        config.train.batch_size = 8
        config.train.early_stopping_patience = 0
        for key, value in train_overrides.items():
            setattr(config.train, key, value)
        return config

    return make


@pytest.fixture(scope="session")
def trained_colour_run(tmp_path_factory) -> Path:
    """A tiny_cnn run folder (32 px, 3 epochs) on three colour classes, trained once per session.

    Classes class0/1/2 are red, green and blue with noise (40 images each, 24×24, split 70/20/10),
    so the model learns them and int8, QAT and pruning results can be judged. Never write into
    it: take ``colour_run``, a copy per test module.
    """
    from edgecls.config import RunConfig
    from edgecls.training.trainer import train

    root = tmp_path_factory.mktemp("colour-run")
    rng = np.random.default_rng(0)
    for index, colour in enumerate([(220, 40, 40), (40, 200, 40), (40, 40, 220)]):
        folder = root / "data" / f"class{index}"
        folder.mkdir(parents=True)
        for i in range(40):
            pixels = np.clip(np.array(colour) + rng.integers(-60, 61, (24, 24, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
    config = RunConfig()
    config.data.path, config.data.img_size = str(root / "data"), 32
    config.model.arch, config.model.weights = "tiny_cnn", "none"
    config.train.epochs, config.train.batch_size, config.train.lr = 3, 8, 0.01
    config.train.early_stopping_patience = 0
    train(config, root / "run", verbose=0)
    return root / "run"


@pytest.fixture(scope="module")
def colour_run(trained_colour_run, tmp_path_factory) -> Path:
    """This module's own copy of ``trained_colour_run``, free to write exports into."""
    import shutil

    target = tmp_path_factory.mktemp("colour-run-copy") / "run"
    shutil.copytree(trained_colour_run, target)
    return target


@pytest.fixture(scope="session")
def deploy_run(tmp_path_factory) -> Path:
    """An untrained tiny_cnn run folder with int8 and float32 TFLite exports and their sidecars
    (tests/deploy_helpers.py: write_deploy_run), for predict, bench, bundle and pi_infer.py. Built
    once per session; never write into it."""
    return write_deploy_run(tmp_path_factory.mktemp("deploy") / "tinyrun")


@pytest.fixture(scope="session")
def ssh_device(tmp_path_factory):
    """A real OpenSSH server on 127.0.0.1 as a device (tests/ssh_device.py), started once per session."""
    reason = sshd_unavailable()
    if reason:
        missing(reason)
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server on 127.0.0.1 in a temporary folder (tests/postgres_server.py), once per session."""
    reason = postgres_unavailable()
    if reason:
        missing(reason)
    server = start_postgres()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pi_infer():
    """The device script edgecls/deploy/pi_infer.py, imported once from its file."""
    return import_pi_infer()


@pytest.fixture
def fresh_keras_session():
    """Clears the Keras session after the test, so models built in it do not pile up in the graph."""
    yield
    from edgecls.tf import keras

    keras.backend.clear_session()
