"""A model whose outputs do not match its labels is refused wherever it is loaded, in one line."""

from __future__ import annotations

import shutil

import pytest

import edgecls
from edgecls.converters import tflite_convert
from edgecls.errors import ModelFileError
from edgecls.models.modeling import build_model
from edgecls.publish import write_sidecar
from edgecls.sidecar import build_sidecar, read_sidecar

MISMATCH = r"has 4 outputs but .* lists 3 labels: the model and its labels come from different runs"


@pytest.fixture(scope="module")
def four_class_model():
    return build_model("tiny_cnn", 32, 4)


@pytest.fixture
def labelled_run_copy(colour_run, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(colour_run, target)
    return target


def test_a_replaced_model_keras_is_not_exported(labelled_run_copy, four_class_model):
    four_class_model.save(labelled_run_copy / "model.keras")
    for command in (lambda: edgecls.quantize(labelled_run_copy, int8=True, verbose=0),
                    lambda: edgecls.export(labelled_run_copy, "onnx", verbose=0)):
        with pytest.raises(ModelFileError, match=MISMATCH + "|" + r"labels\.txt"):
            command()
    assert not (labelled_run_copy / "exports" / "int8.tflite").exists()


def test_a_foreign_tflite_file_is_not_bundled_or_predicted(labelled_run_copy, four_class_model, tmp_path):
    records = edgecls.quantize(labelled_run_copy, int8=True, verbose=0)
    int8 = next(r.path for r in records if r.variant == "int8")
    own_sidecar = read_sidecar(int8)
    int8.write_bytes(tflite_convert.convert(four_class_model, "float32"))  # another run's file, this run's JSON
    image = _any_png(tmp_path)
    for command in (lambda: edgecls.bundle(labelled_run_copy, tmp_path / "bundle"),
                    lambda: edgecls.predict(int8, [image])):
        with pytest.raises(ModelFileError, match=r"int8\.json is stale: it describes other bytes than .*int8\.tflite"):
            command()
    write_sidecar(int8, own_sidecar)  # the JSON now describes these bytes, but its labels are not the model's
    for command in (lambda: edgecls.bundle(labelled_run_copy, tmp_path / "bundle"),
                    lambda: edgecls.predict(int8, [image])):
        with pytest.raises(ModelFileError, match=MISMATCH):
            command()
    # Its own sidecar copied along (four labels): it still does not answer for this run's classes.
    write_sidecar(int8, build_sidecar(**{**_fields(own_sidecar), "model_file": int8,
                                         "labels": ["a", "b", "c", "d"], "input_dtype": "float32",
                                         "output_kind": "probabilities"}))
    with pytest.raises(ModelFileError, match=r"has 4 outputs but .*labels\.txt lists 3 labels"):
        edgecls.bundle(labelled_run_copy, tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()


def _fields(sidecar: dict) -> dict:
    return {"fmt": "tflite", "variant": "int8", "architecture": sidecar["architecture"],
            "img_size": sidecar["input"]["shape"][1]}


def _any_png(folder):
    import numpy as np
    from PIL import Image

    path = folder / "red.png"
    Image.fromarray(np.full((32, 32, 3), (220, 40, 40), np.uint8)).save(path)
    return path


def test_the_report_flags_an_export_of_another_runs_classes(labelled_run_copy, four_class_model):
    from edgecls.converters import tflite_convert as convert_module

    foreign = labelled_run_copy / "exports" / "foreign.tflite"
    foreign.parent.mkdir(exist_ok=True)
    foreign.write_bytes(convert_module.convert(four_class_model, "float32"))
    write_sidecar(foreign, build_sidecar(model_file=foreign, fmt="tflite", variant="foreign", labels=list("abcd"),
                                         architecture="other", img_size=int(four_class_model.input_shape[1]),
                                         input_dtype="float32", output_kind="probabilities"))
    html = edgecls.report(labelled_run_copy).read_text(encoding="utf-8")
    assert "FOREIGN: its outputs are not this run" in html
    assert "has 4 outputs but" in html and "lists 3 labels" in html
