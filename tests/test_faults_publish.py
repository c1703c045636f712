"""A model and its sidecar are published as one: a process killed at every step of the publish
(``EDGECLS_KILL_AT``, SIGKILL at that very step) leaves a pair that agrees, or one a reader
refuses naming the stale file, which the next writer into the folder completes."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import edgecls
from edgecls.faults import KILL_ENV
from edgecls.publish import STAGES, write_sidecar
from edgecls.run_lock import writing
from edgecls.sidecar import StaleSidecarError, read_model_sidecar, read_sidecar

# Publishes SOURCE's bytes under TARGET with SOURCE's sidecar (variant "new"); a folder target for a SavedModel.
PUBLISHER = textwrap.dedent("""
    import shutil, sys
    from pathlib import Path
    from edgecls.publish import publish
    from edgecls.sidecar import read_sidecar
    target, source = Path(sys.argv[1]), Path(sys.argv[2])
    if source.is_dir():
        write = lambda tmp: shutil.copytree(source, tmp, dirs_exist_ok=True)
    else:
        write = lambda tmp: shutil.copyfile(source, tmp)
    publish(target, write, lambda tmp: dict(read_sidecar(source), variant="new"))
""")
BEFORE_SWAP = STAGES[:STAGES.index("model-replaced")]


def _digest(path: Path) -> str:
    from edgecls.sidecar import content_sha256

    return content_sha256(path)


@pytest.fixture
def pairs(deploy_run, tmp_path):
    """An old published pair and a new model for it, per format: .tflite, .onnx, a SavedModel-like folder."""
    from deploy_helpers import LABELS

    folder = tmp_path / "exports"
    folder.mkdir()
    made = {}
    for name in ("int8.tflite", "float32.tflite"):
        shutil.copyfile(deploy_run / "exports" / name, folder / name)
        write_sidecar(folder / name, read_sidecar(deploy_run / "exports" / name))
    made["tflite"] = (folder / "int8.tflite", folder / "float32.tflite")
    for name, files in (("saved_model", {"saved_model.pb": b"old", "variables/v": b"1"}),
                        ("new_saved_model", {"saved_model.pb": b"new graph", "variables/v": b"2"})):
        for relative, data in files.items():
            (folder / name / relative).parent.mkdir(parents=True, exist_ok=True)
            (folder / name / relative).write_bytes(data)
        write_sidecar(folder / name, {"labels": list(LABELS), "input": {}, "variant": name})
    made["folder"] = (folder / "saved_model", folder / "new_saved_model")
    return made


def _publish_killed_at(stage: str, target: Path, source: Path) -> None:
    env = {**os.environ, KILL_ENV: stage}
    done = subprocess.run([sys.executable, "-c", PUBLISHER, str(target), str(source)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == -9, done.stderr  # killed at that step, not finished or failed


@pytest.mark.parametrize("kind", ["tflite", "folder"])
@pytest.mark.parametrize("stage", STAGES)
def test_a_publish_killed_at_any_step_never_leaves_a_pair_that_disagrees(pairs, kind, stage):
    target, source = pairs[kind]
    old_digest, old_variant = _digest(target), read_sidecar(target)["variant"]
    _publish_killed_at(stage, target, source)
    if stage in BEFORE_SWAP:
        assert _digest(target) == old_digest and read_sidecar(target)["variant"] == old_variant
    elif stage == "model-replaced":
        assert _digest(target) != old_digest  # the new model (its embedded copy says "new") beside the old JSON
        with pytest.raises(StaleSidecarError, match=rf"{target.with_suffix('.json').name} is stale: it describes "
                                                    rf"other bytes than .*{target.name}"):
            read_sidecar(target)
    else:
        assert read_sidecar(target)["variant"] == "new"
    with writing(target.parent):  # the next writer: completes a publish cut between its renames, clears the rest
        pass
    assert not list(target.parent.rglob(".tmp-*"))
    sidecar = read_sidecar(target)
    assert sidecar["sha256"] == _digest(target)
    assert sidecar["variant"] == (old_variant if stage in BEFORE_SWAP else "new")
    if kind == "tflite":
        target.with_suffix(".json").unlink()
        embedded, where = read_model_sidecar(target)
        assert where == "embedded" and embedded["variant"] == sidecar["variant"]  # the copy inside agrees too


def test_the_json_records_the_hash_of_the_bytes_it_describes(pairs):
    target, _ = pairs["tflite"]
    sidecar = read_sidecar(target)
    assert sidecar["sha256"] == hashlib.sha256(target.read_bytes()).hexdigest()
    assert sidecar["size"]["bytes"] == target.stat().st_size


def test_readers_name_the_stale_file_in_one_line(pairs, tmp_path, make_images):
    """predict and bench (the CLI, in a fresh process) and bundle say which file is stale; exit 2."""
    target, source = pairs["tflite"]
    target.write_bytes(source.read_bytes())  # a file copied over by hand: its JSON describes the old bytes
    images = make_images(tmp_path / "images", {"a": 1, "b": 1})
    for args in (["predict", str(target), str(images)], ["bench", str(target), "--data", str(images), "--runs", "2", "--rounds", "1"]):
        done = subprocess.run([sys.executable, "-m", "edgecls", *args], capture_output=True, text=True, timeout=300)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.strip().splitlines()[-1].startswith(f"error: {target.with_suffix('.json')} is stale")
        assert "Traceback" not in done.stderr


def test_bundle_refuses_a_stale_pair(deploy_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(deploy_run, run)
    int8 = run / "exports" / "int8.tflite"
    int8.write_bytes((run / "exports" / "float32.tflite").read_bytes())
    with pytest.raises(StaleSidecarError, match=r"int8\.json is stale"):
        edgecls.bundle(run, tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()


@pytest.mark.slow
@pytest.mark.parametrize("stage", STAGES)
def test_a_real_quantize_killed_at_any_step_leaves_a_pair_that_agrees(colour_run, stage, tmp_path):
    """``edgecls quantize --int8`` itself, killed at each step over an earlier export; then predict and a rerun."""
    run = tmp_path / "run"
    shutil.copytree(colour_run, run)
    edgecls.quantize(run, int8=True, verbose=0)
    int8 = run / "exports" / "int8.tflite"
    old = _digest(int8)
    env = {**os.environ, KILL_ENV: stage}
    done = subprocess.run([sys.executable, "-m", "edgecls", "quantize", str(run), "--int8"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == -9, done.stderr
    if stage in BEFORE_SWAP:
        assert _digest(int8) == old and read_sidecar(int8)["sha256"] == old
    elif stage == "model-replaced":
        with pytest.raises(StaleSidecarError):
            read_sidecar(int8)
    again = subprocess.run([sys.executable, "-m", "edgecls", "quantize", str(run), "--int8"], capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert read_sidecar(int8)["sha256"] == _digest(int8)
    assert not list(run.rglob(".tmp-*"))


def test_pi_infer_on_the_device_refuses_a_stale_pair_too(pairs, tmp_path, make_images):
    from deploy_helpers import PI_INFER

    target, source = pairs["tflite"]
    target.write_bytes(source.read_bytes())
    image = next(make_images(tmp_path / "images", {"a": 1}).rglob("*.png"))
    done = subprocess.run([sys.executable, str(PI_INFER), str(target), str(image)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [f"error: {target.with_suffix('.json')} is stale: it describes other "
                                                f"bytes than {target} (sha256 differs; a copy was cut short or one of "
                                                "the two files was replaced); copy both again, or delete int8.json to "
                                                "use the copy inside the model"]


def test_the_report_flags_a_stale_pair_and_names_the_file(trained_colour_run, deploy_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_colour_run, run)
    shutil.copytree(deploy_run / "exports", run / "exports", dirs_exist_ok=True)
    (run / "exports" / "int8.tflite").write_bytes((run / "exports" / "float32.tflite").read_bytes())
    html = edgecls.report(run).read_text(encoding="utf-8")
    assert "STALE: this sidecar describes other bytes than the file" in html
    assert "exports/int8.json: " in html and "int8.json is stale" in html
