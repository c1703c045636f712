"""The default --weights: ImageNet where the architecture has published weights, from scratch elsewhere."""

from __future__ import annotations

import pytest
import yaml
from deploy_helpers import assert_one_error_line, cli

from edgecls.config import RunConfig
from edgecls.errors import EdgeclsError
from edgecls.models import get_model_spec, list_models, modeling

NOTE = "has no published ImageNet weights: training from scratch"


def test_auto_is_the_default_and_means_imagenet_only_where_published():
    assert RunConfig().model.weights == "auto"
    for arch in list_models():
        expected = "imagenet" if get_model_spec(arch).pretrained else "none"
        assert modeling.choose_weights(arch, "auto") == expected, arch
    assert {"simple_cnn", "resnet9", "tiny_cnn"} <= {a for a in list_models() if not get_model_spec(a).pretrained}
    # An explicit choice is the user's, taken as it is.
    assert modeling.choose_weights("simple_cnn", "imagenet") == "imagenet"
    assert modeling.choose_weights("mobilenet_v3_small", "none") == "none"


def test_explicit_imagenet_on_an_architecture_without_it_stays_an_error():
    modeling.build_model("simple_cnn", 32, 3, weights="auto", alpha=0.25)
    with pytest.raises(EdgeclsError, match="no ImageNet weights"):
        modeling.build_model("simple_cnn", 32, 3, weights="imagenet", alpha=0.25)


@pytest.mark.parametrize("arch, extra", [("tiny_cnn", []), ("simple_cnn", ["--alpha", "0.25"])])
def test_the_default_trains_from_scratch_and_says_so_in_one_line(arch, extra, tmp_path, make_images, capsys):
    data = make_images(tmp_path / "data", per_class=4)
    run = tmp_path / "run"
    code, out, err = cli(["train", data, "--out", run, "--arch", arch, *extra, "--img-size", "32", "--epochs", "1",
                          "--batch-size", "4", "--no-tensorboard"], capsys)
    assert code == 0, err
    notes = [line for line in err.splitlines() if NOTE in line]
    assert notes == [f"{arch} {NOTE}"], err
    # config.yaml records what "auto" chose, for --resume and every later stage.
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["weights"] == "none"


def test_a_recipe_or_flag_that_names_the_weights_gets_no_note(tmp_path, make_images, capsys):
    data = make_images(tmp_path / "data", per_class=4)
    code, out, err = cli(["train", data, "--out", tmp_path / "run", "--arch", "tiny_cnn", "--weights", "none",
                          "--img-size", "32", "--epochs", "1", "--batch-size", "4", "--no-tensorboard"], capsys)
    assert code == 0, err
    assert NOTE not in err


def test_mobilenet_v3_with_the_default_offline_is_one_line_and_exit_2(tmp_path, make_images, capsys, monkeypatch):
    import tf_keras.src.applications.mobilenet_v3 as mobilenet_v3_module

    from edgecls.tf import keras

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- [Errno -3]")

    # Keras asks for the weights file even when it is cached; refusing that call is "no network".
    monkeypatch.setattr(keras.utils, "get_file", offline)
    monkeypatch.setattr(mobilenet_v3_module.data_utils, "get_file", offline)
    data = make_images(tmp_path / "data", per_class=4)
    code, out, err = cli(["train", data, "--out", tmp_path / "run", "--arch", "mobilenet_v3_small", "--img-size", "32",
                          "--epochs", "1", "--batch-size", "4", "--quiet"], capsys)
    assert_one_error_line(code, out, err, "cannot download the ImageNet weights for mobilenet_v3_small")
    assert NOTE not in err
