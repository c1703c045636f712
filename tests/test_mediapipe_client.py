"""MediaPipe Tasks' ImageClassifier, the client most edge apps use, runs edgecls' .tflite files as they are.

The exports are a trained run's float32 and int8 files (``colour_run``, exported once here) with
author, licence and version set in the run's config.yaml. The README's snippet itself is run on
60 images already at the model's size, so MediaPipe and ``edgecls predict`` see the same pixels
and must agree on every top-1, with label names; on images of another size MediaPipe resizes with
its own method, and the agreement is measured and printed rather than assumed. MediaPipe's own
generated metadata schema parses what edgecls wrote.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from components import missing
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
CLASSES = ("class0", "class1", "class2")
COLOURS = ((220, 40, 40), (40, 200, 40), (40, 40, 220))  # the colours trained_colour_run learnt
SIZE = 32  # the run's input size
INFO = {"version": "1.2.0", "author": "Ada Lovelace", "license": "Apache-2.0"}
SNIPPET = re.compile(r"<!-- mediapipe-snippet[^>]*-->\s*```python\n(.*?)```\s*<!-- /mediapipe-snippet -->", re.S)


def _mediapipe() -> str:
    """The Python with MediaPipe Tasks (its own environment: README, .ci/run)."""
    from edgecls.deploy import mediapipe_client

    executable = mediapipe_client.python()
    if executable is None:  # also when libmediapipe.so lacks its EGL/GLES libraries (.ci/run installs them)
        missing(mediapipe_client.why_not())
    return executable


@pytest.fixture(scope="module")
def client_exports(colour_run):
    """{variant: path} of the colour run's float32 and int8 TFLite, exported with metadata options set."""
    import edgecls

    config_path = colour_run / "config.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["metadata"] = dict(config.get("metadata") or {}, **INFO)
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    records = edgecls.export(colour_run, "tflite", int8=True, calibration=32, verbose=0)
    return {record.variant: Path(record.path) for record in records}


def _images(root: Path, size: tuple[int, int], per_class: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    for name, colour in zip(CLASSES, COLOURS):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(np.array(colour) + rng.integers(-60, 61, (*size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{name}_{i:02d}.png")
    return root


def readme_snippet() -> str:
    found = SNIPPET.findall((REPO / "README.md").read_text(encoding="utf-8"))
    assert len(found) == 1, "README.md needs exactly one mediapipe-snippet block"
    return found[0]


def _run_snippet(model: Path, photos: Path) -> dict[str, tuple[str, float]]:
    """The README's snippet, as an app runs it (a script in MediaPipe's Python), with its two paths pointed at
    ``model`` and ``photos``: {file name: (label, score)}."""
    code = readme_snippet()
    assert '"runs/flowers/exports/int8.tflite"' in code and 'Path("photos")' in code
    code = code.replace('"runs/flowers/exports/int8.tflite"', repr(str(model))).replace(
        'Path("photos")', f"Path({str(photos)!r})")
    script = photos.parent / "readme_snippet.py"
    script.write_text(code, encoding="utf-8")
    done = subprocess.run([_mediapipe(), str(script)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    answers = {}
    for line in done.stdout.splitlines():
        name, label, score = line.rsplit(" ", 2)
        answers[name] = (label, float(score))
    return answers


def _flat(folder: Path, target: Path) -> Path:
    """The images of ``folder``'s class folders side by side in ``target`` (the snippet reads one folder)."""
    target.mkdir()
    for path in sorted(folder.rglob("*.png")):
        (target / path.name).write_bytes(path.read_bytes())
    return target


def _agreement(model: Path, photos: Path) -> tuple[float, int, dict, dict]:
    import edgecls

    ours = {Path(r["file"]).name: (r["top_k"][0]["label"], r["top_k"][0]["score"])
            for r in edgecls.predict(model, photos, top_k=1)}
    theirs = _run_snippet(model, photos)
    assert set(theirs) == set(ours) and len(ours) >= 50
    same = sum(theirs[name][0] == ours[name][0] for name in ours)
    return same / len(ours), len(ours), ours, theirs


@pytest.mark.parametrize("variant", ["float32", "int8"])
def test_the_readme_snippet_agrees_with_predict_on_every_image_at_the_model_size(variant, client_exports, tmp_path):
    photos = _flat(_images(tmp_path / "data", (SIZE, SIZE), per_class=20, seed=1), tmp_path / "photos")
    agreement, count, ours, theirs = _agreement(client_exports[variant], photos)
    print(f"{variant}: MediaPipe ImageClassifier and edgecls predict agree on {agreement:.2%} of {count} "
          f"top-1s ({SIZE}×{SIZE} images, no resize)")
    assert agreement == 1.0, [(n, ours[n], theirs[n]) for n in ours if ours[n][0] != theirs[n][0]]
    assert {label for label, _ in theirs.values()} <= set(CLASSES)  # label names, not None or indices
    kind = json.loads(client_exports[variant].with_suffix(".json").read_text())["output"]["kind"]
    assert kind == ("logits" if variant == "int8" else "probabilities")
    if kind == "probabilities":  # the softmax is in the graph, so MediaPipe's score is predict's probability
        assert max(abs(theirs[n][1] - ours[n][1]) for n in ours) <= 1e-3 / 2 + 1e-6  # the snippet rounds to 3 places
    truth = sum(theirs[name][0] == name.rsplit("_", 1)[0] for name in theirs) / len(theirs)
    assert truth > 0.9  # a trained model, so the agreement is not that of ties on noise


@pytest.mark.parametrize("variant", ["float32", "int8"])
def test_on_images_of_another_size_the_agreement_is_measured(variant, client_exports, tmp_path):
    photos = _flat(_images(tmp_path / "data", (24, 40), per_class=20, seed=2), tmp_path / "photos")
    agreement, count, _, _ = _agreement(client_exports[variant], photos)
    # MediaPipe resizes 24×40 → 32×32 with its own sampler, edgecls with PIL bilinear: printed, not assumed.
    print(f"{variant}: MediaPipe and edgecls predict agree on {agreement:.2%} of {count} top-1s (24×40 images, resized)")
    assert agreement >= 0.8


# Parsed in MediaPipe's Python with MediaPipe's own generated schema code; printed as plain data (bytes as text,
# None fields left out).
READ_WITH_MEDIAPIPE = """
import json, sys
from mediapipe.tasks.metadata import metadata_schema_py_generated as schema

def plain(value):
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, list):
        return [plain(item) for item in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "__dict__"):
        return {key: plain(item) for key, item in vars(value).items() if item is not None}
    return value

buffer = open(sys.argv[1], "rb").read()
print(json.dumps({"identified": bool(schema.ModelMetadata.ModelMetadataBufferHasIdentifier(buffer, 0)),
                  "metadata": plain(schema.ModelMetadataT.InitFromPackedBuf(buffer, 0)),
                  "enums": {"image": schema.ContentProperties.ImageProperties, "rgb": schema.ColorSpaceType.RGB,
                            "normalization": schema.ProcessUnitOptions.NormalizationOptions,
                            "feature": schema.ContentProperties.FeatureProperties,
                            "labels": schema.AssociatedFileType.TENSOR_AXIS_LABELS}}))
"""


@pytest.mark.parametrize("variant", ["float32", "int8"])
def test_mediapipes_metadata_schema_reads_what_edgecls_wrote(variant, client_exports, tmp_path):
    """Parsed with MediaPipe's own generated schema code (its Python displayer and writers cannot be
    imported from the 1.2.3 wheel: they need mediapipe.tasks.cc, which it does not ship)."""
    import zipfile

    from edgecls.converters.tflite_metadata import read_metadata_buffer
    from edgecls.model_metadata import strip_tflite

    model = client_exports[variant]
    buffer_file = tmp_path / "metadata.bin"
    buffer_file.write_bytes(read_metadata_buffer(strip_tflite(model.read_bytes())))
    done = subprocess.run([_mediapipe(), "-c", READ_WITH_MEDIAPIPE, str(buffer_file)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    parsed = json.loads(done.stdout)
    assert parsed["identified"]
    described, schema = parsed["metadata"], SimpleNamespace(**parsed["enums"])
    sidecar = json.loads(model.with_suffix(".json").read_text())
    assert {k: described[k] for k in ("name", "version", "author", "license")} == {"name": "run", **INFO}
    assert described["description"] == sidecar["tflite"]["standard_metadata"]["description"]
    assert "tiny_cnn" in described["description"] and variant in described["description"]
    assert described["minParserVersion"] == "1.0.0"
    (subgraph,) = described["subgraphMetadata"]
    (image,), (score,) = subgraph["inputTensorMetadata"], subgraph["outputTensorMetadata"]
    assert image["content"] == {"contentPropertiesType": schema.image, "contentProperties": {
        "colorSpace": schema.rgb, "defaultSize": {"width": SIZE, "height": SIZE}}}
    assert image["stats"] == {"max": [255.0], "min": [0.0]}
    if variant == "float32":  # (pixel - 0) / 1: the 0–255 the graph takes
        assert image["processUnits"] == [{"optionsType": schema.normalization,
                                          "options": {"mean": [0.0], "std": [1.0]}}]
    else:  # uint8 pixels go in as they are
        assert "processUnits" not in image
    assert score["content"]["contentPropertiesType"] == schema.feature
    assert score["associatedFiles"] == [{"name": "labels.txt", "type": schema.labels,
                                         "description": "Labels for categories that the model can recognize."}]
    with zipfile.ZipFile(model) as zipped:
        assert zipped.read("labels.txt").decode().splitlines() == list(CLASSES)
