"""The table of formats (edgecls.formats) is the one place a format is declared.

A fake format added to the table is exported, benchmarked, listed in errors and in --help without
another line of edgecls changing; every sidecar an export writes follows one contract.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import fake_format
import pytest

import edgecls
from edgecls import formats
from edgecls.errors import EdgeclsError
from edgecls.sidecar import read_sidecar

TESTS = Path(__file__).resolve().parent


def test_every_reference_in_the_table_imports():
    for fmt in formats.FORMATS.values():
        for field in ("export", "runtime", "version", "embed", "read_embedded", "search_steps", "describe"):
            ref = getattr(fmt, field)
            if ref is not None:
                assert callable(formats.load(ref)), f"{fmt.name}.{field} = {ref}"


def test_the_table_answers_what_used_to_be_parallel_lists():
    assert formats.export_names() == ["tflite", "onnx", "saved_model"]
    assert formats.runtime_names() == ["tflite", "onnx", "keras"]
    assert formats.search_names() == ["tflite", "onnx"]
    assert formats.for_path("a/b/int8.TFLITE").name == "tflite"
    with pytest.raises(EdgeclsError, match=r"expected \.tflite, \.onnx or \.keras"):
        formats.for_path("model.h5")
    with pytest.raises(EdgeclsError, match="unknown format 'tf_js'; choose tflite, onnx or saved_model"):
        formats.get("tf_js")


def test_a_new_format_is_exported_and_benchmarked_from_its_row(colour_run, trained_colour_run, monkeypatch):
    fake_format.install(monkeypatch)
    assert "fake" in formats.export_names() and ".fake" in formats.runnable_suffixes()

    record, = edgecls.export(colour_run, "fake", verbose=0)
    assert record.path == colour_run / "exports" / "fake_float32.fake"
    sidecar = read_sidecar(record.path)
    assert sidecar["variant"] == "fake_float32" and sidecar["versions"]["numpy"] == metadata.version("numpy")
    assert record.accuracy == sidecar["accuracy"]["top1"] > 0.5

    # A run folder's exports of the new format are found, run in the new runtime and say which it is.
    data = trained_colour_run.parent / "data"
    rows = edgecls.bench([colour_run], data=data, runtime="fake", runs=3, rounds=1, warmup=1, e2e_images=0, verbose=0)
    assert [(Path(r["model"]).name, r["runtime"]) for r in rows] == [("fake_float32.fake", "fake")]
    assert fake_format.VERSION in json.dumps(rows[0])
    assert edgecls.predict(record.path, sorted(data.rglob("*.png"))[:2])

    with pytest.raises(EdgeclsError, match="choose tflite, onnx, saved_model, fake or all"):
        edgecls.export(colour_run, "tf_js", verbose=0)


def test_a_new_format_is_in_the_help_texts():
    # Help texts are made when the CLI is imported, so the row is added first in a fresh process.
    code = ("import sys, fake_format; from edgecls import formats; formats.FORMATS['fake'] = fake_format.FAKE; "
            "from edgecls.cli import main; sys.argv = ['edgecls', *sys.argv[1:]]; main()")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
           "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    for command, shown in ((["export", "--help"], "tflite | onnx | saved_model | fake | all"),
                           (["bench", "--help"], "tflite | onnx | keras | fake | all"),
                           (["predict", "--help"], ".fake")):
        out = subprocess.run([sys.executable, "-c", code, *command], capture_output=True, text=True, env=env,
                             timeout=120)
        assert out.returncode == 0, out.stderr
        assert shown in " ".join(out.stdout.split()), (command, out.stdout)


def test_every_sidecar_of_an_export_of_all_follows_one_contract(colour_run):
    records = edgecls.export(colour_run, "all", int8=True, verbose=0)
    sidecars = {r.variant: read_sidecar(r.path) for r in records}
    assert set(sidecars) == {"float32", "int8", "onnx_float32", "onnx_int8", "saved_model"}
    # What a format adds of its own sits under its own name; int8 also says what it was calibrated on.
    own = {"calibration_images"}
    contract = {variant: set(s) - {s["format"]} - own for variant, s in sidecars.items()}
    assert len({frozenset(keys) for keys in contract.values()}) == 1, contract
    for variant, sidecar in sidecars.items():
        assert sidecar["format"] in formats.FORMATS and sidecar["labels"] == ["class0", "class1", "class2"]
        assert sidecar["input"]["pixel_range"] == [0, 255], variant
        for package in ("edgecls", *formats.FORMATS[sidecar["format"]].packages):
            try:
                installed = metadata.version(package)
            except metadata.PackageNotFoundError:
                assert package not in sidecar["versions"], (variant, package)
            else:
                assert sidecar["versions"][package] == installed, (variant, package)
    assert sidecars["saved_model"]["saved_model"]["signature"] == "serving_default"
    assert sidecars["saved_model"]["accuracy"]["top1"] == pytest.approx(sidecars["float32"]["accuracy"]["top1"])
