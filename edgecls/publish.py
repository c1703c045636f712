"""Publishing a model and its sidecar as one: both complete under temporary names before either final name changes.

A killed export used to leave ``int8.tflite`` new and bare beside an ``int8.json`` that described
the previous file. Here every model file (or SavedModel folder) is written, measured, given its
embedded sidecar and its sidecar JSON entirely under ``.tmp-*`` names in the same folder; only
then are the two renamed, model first. The JSON carries the sha256 of the bytes it describes, so
a reader that finds the pair mid-swap (a kill between the two renames, or a file copied in by
hand) says which file is stale instead of trusting it, and the next writer into the folder rolls
such an interrupted publish forward (:func:`finish_interrupted`).

Each stage is a fault point (edgecls.faults): the tests kill a real export at every one of them.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from edgecls.faults import reached
from edgecls.fsutil import TEMP_PREFIX, final_name, temp_beside, user_error, write_json
from edgecls.sidecar import SHA_KEY, content_sha256, file_sizes, sidecar_path

# In order; "model-replaced" is the only one after which a reader can find the new model beside the old JSON.
STAGES = ("model-written", "described", "embedded", "sidecar-staged", "model-replaced", "published")


def publish(target, write: Callable[[Path], object], describe: Callable[[Path], dict]) -> dict:
    """Write a model to ``target`` with its sidecar, as one publish; returns the sidecar as published.

    ``write(tmp)`` writes the model at a temporary path whose name ends with ``target``'s (a folder
    already made, for a folder target); ``describe(tmp)`` measures that file and returns its
    sidecar. The sidecar is embedded where the format carries one, its JSON is staged with the
    file's size and sha256, and only then are both renamed into place.
    """
    from edgecls.model_metadata import carries_sidecar, embed_in_file

    target = Path(target)
    json_target = sidecar_path(target)
    folder = target.is_dir() or not target.suffix  # a SavedModel
    tmp = temp_beside(target, folder=folder)
    json_tmp = None
    try:
        write(tmp)
        reached("model-written")
        sidecar = dict(describe(tmp), model_file=target.name)
        reached("described")
        if not folder and carries_sidecar(target):
            embed_in_file(tmp, sidecar)
        reached("embedded")
        sidecar.update(size=file_sizes(tmp), **{SHA_KEY: content_sha256(tmp)})
        json_tmp = temp_beside(json_target)
        write_json(json_tmp, sidecar)
        reached("sidecar-staged")
        _replace(tmp, target, folder)
        reached("model-replaced")
        os.replace(json_tmp, json_target)
        reached("published")
    except OSError as exc:
        raise user_error(exc, target) from None
    finally:
        for leftover in (tmp, json_tmp):
            if leftover is not None and leftover.exists():
                shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink()
    return sidecar


def finish_interrupted(folder) -> list[Path]:
    """Complete publishes that were killed between their two renames; returns the JSON files put in place.

    A staged ``.tmp-*-<name>.json`` whose recorded sha256 is that of the model now under its final
    name is the sidecar of that model, so it is renamed over the stale JSON rather than deleted.
    Only for folders no other process is writing to (``edgecls.run_lock.writing``).
    """
    done = []
    for staged in sorted(Path(folder).rglob(f"{TEMP_PREFIX}*.json")):
        try:
            sidecar = json.loads(staged.read_text(encoding="utf-8"))
            model = staged.parent / sidecar["model_file"]
            final = staged.parent / final_name(staged)
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if (isinstance(sidecar.get(SHA_KEY), str) and model.exists() and final.suffix == ".json"
                and final.stem == Path(model.name).stem and content_sha256(model) == sidecar[SHA_KEY]):
            os.replace(staged, final)
            done.append(final)
    return done


def _replace(tmp: Path, target: Path, folder: bool) -> None:
    if not folder or not target.exists():
        os.replace(tmp, target)
        return
    # A folder cannot be renamed over a non-empty one: the old goes aside (a .tmp-* name) first.
    aside = temp_beside(target.with_name(f"old-{target.name}"), folder=True)
    os.rmdir(aside)
    os.replace(target, aside)
    os.replace(tmp, target)
    shutil.rmtree(aside, ignore_errors=True)


def write_sidecar(model_path, sidecar: dict) -> Path:
    """Give an existing model file ``sidecar``, embedded in it (.tflite/.onnx) and as ``<model>.json``
    with the file's size and sha256, published as one (edgecls.publish); returns the JSON's path.

    Exports write new models through ``edgecls.publish.publish`` directly; this is for a file
    already in place (a copy, a model made by another tool). Without a model file there is only
    the JSON, with no hash to check."""
    model_path = Path(model_path)
    if not model_path.exists():
        return write_json(sidecar_path(model_path), sidecar)
    if model_path.is_dir():
        copy = lambda tmp: shutil.copytree(model_path, tmp, dirs_exist_ok=True)  # noqa: E731
    else:
        copy = lambda tmp: shutil.copyfile(model_path, tmp)  # noqa: E731
    publish(model_path, copy, lambda tmp: sidecar)
    return sidecar_path(model_path)
