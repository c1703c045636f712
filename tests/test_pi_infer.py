"""pi_infer.py: standalone (no TensorFlow, no edgecls), same pixels and same answers as edgecls."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import types

import numpy as np
import pytest
from deploy_helpers import NO_TF_RUNNER, PI_INFER, tflite_runtime_214_python
from PIL import Image, TiffImagePlugin

from edgecls.data.images import BadImage, load_image_array
from edgecls.deploy.prediction import predict_files
from edgecls.model_metadata import strip_tflite


def _exif_jpeg(path, orientation, size=(40, 20)):
    pixels = np.random.default_rng(orientation).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    pixels[:5, :5] = 255  # a corner marker: rotation moves it
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(path, exif=exif.tobytes(), quality=95)


def _tricky_images(folder):
    """Every kind of file load_rgb has a rule for, plus odd sizes; returns the paths."""
    rng = np.random.default_rng(7)
    folder.mkdir(parents=True, exist_ok=True)
    made = []

    def save(name, img, **kwargs):
        img.save(folder / name, **kwargs)
        made.append(folder / name)

    for orientation in range(1, 9):
        _exif_jpeg(folder / f"exif_{orientation}.jpg", orientation)
        made.append(folder / f"exif_{orientation}.jpg")
    rgba = rng.integers(0, 256, (30, 50, 4), dtype=np.uint8)
    rgba[..., 3] = np.linspace(0, 255, 50, dtype=np.uint8)[None, :]
    save("rgba.png", Image.fromarray(rgba, "RGBA"))
    save("rgba.webp", Image.fromarray(rgba, "RGBA"), lossless=True)
    la = np.stack([rng.integers(0, 256, (17, 23)), rng.integers(0, 256, (17, 23))], axis=-1).astype(np.uint8)
    save("la.png", Image.fromarray(la, "LA"))
    palette = Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).quantize(16)
    save("palette.gif", palette)
    save("palette_transparent.png", palette, transparency=3)
    save("grey.jpg", Image.fromarray(rng.integers(0, 256, (33, 21), dtype=np.uint8), "L"))
    save("bilevel.png", Image.fromarray(rng.integers(0, 2, (15, 15), dtype=np.uint8) * 255, "L").convert("1"))
    sixteen = rng.integers(0, 65536, (25, 31), dtype=np.uint16)
    save("sixteen.png", Image.fromarray(sixteen))  # I;16
    save("int32.tif", Image.fromarray(rng.integers(-100, 70000, (12, 19), dtype=np.int32)))
    save("float01.tif", Image.fromarray(rng.random((14, 9), dtype=np.float32)))
    float255 = rng.random((14, 9), dtype=np.float32) * 300
    float255[0, 0] = np.nan
    save("float255.tif", Image.fromarray(float255))
    cmyk = Image.fromarray(rng.integers(0, 256, (26, 18, 3), dtype=np.uint8)).convert("CMYK")
    save("cmyk.jpg", cmyk)
    save("cmyk.tif", cmyk)
    save("one_pixel.png", Image.new("RGB", (1, 1), (10, 200, 30)))
    save("wide.png", Image.fromarray(rng.integers(0, 256, (3, 300, 3), dtype=np.uint8)))
    save("large.jpg", Image.fromarray(rng.integers(0, 256, (400, 500, 3), dtype=np.uint8)), quality=80)
    broken_exif = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(broken_exif, "JPEG",
                                                                             exif=b"Exif\x00\x00MM\x00*garbage")
    (folder / "broken_exif.jpg").write_bytes(broken_exif.getvalue())
    made.append(folder / "broken_exif.jpg")
    (folder / "truncated.png").write_bytes((folder / "wide.png").read_bytes()[:60])
    made.append(folder / "truncated.png")
    (folder / "empty.jpg").write_bytes(b"")
    made.append(folder / "empty.jpg")
    (folder / "text.jpg").write_text("not an image")
    made.append(folder / "text.jpg")
    return made


@pytest.mark.filterwarnings("ignore:Corrupt EXIF")
def test_preprocessing_is_byte_identical_to_edgecls(tmp_path, pi_infer):
    TiffImagePlugin.WRITE_LIBTIFF = False
    files = _tricky_images(tmp_path / "tricky")
    compared = 0
    for path in files:
        for height, width in ((32, 32), (24, 40)):
            try:
                expected = load_image_array(path, (height, width))
            except BadImage:
                with pytest.raises(pi_infer.BadImage):
                    pi_infer.load_image_array(str(path), height, width)
                continue
            got = pi_infer.load_image_array(str(path), height, width)
            assert got.dtype == np.uint8 and got.shape == (height, width, 3)
            assert got.tobytes() == expected.tobytes(), path.name
            compared += 1
    assert compared >= 2 * 25
    # The marker of exif_6 (rotated 90°) must have moved: orientation is really applied.
    upright = load_image_array(tmp_path / "tricky" / "exif_6.jpg", (40, 20))
    assert upright.shape == (40, 20, 3)


def test_same_answers_as_predict_without_tensorflow(deploy_run, tmp_path, make_images):
    data = make_images(tmp_path / "imgs", per_class=3)
    model = deploy_run / "exports" / "int8.tflite"
    result = subprocess.run([sys.executable, "-c", NO_TF_RUNNER, str(PI_INFER), str(model), str(data), "--json",
                             "--top-k", "3"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "blocked" not in result.stderr
    device = json.loads(result.stdout)
    host = predict_files([model], [data], top_k=3)[0].records
    assert [r["file"] for r in device] == [r["file"] for r in host]
    assert [r["top_k"][0]["label"] for r in device] == [r["top_k"][0]["label"] for r in host]
    assert device == host  # same interpreter, same pixels: identical records


def test_the_runner_really_blocks_tensorflow_and_edgecls(tmp_path):
    for module in ("tensorflow", "edgecls"):
        probe = tmp_path / f"probe_{module}.py"
        probe.write_text(f"import {module}\n")
        result = subprocess.run([sys.executable, "-c", NO_TF_RUNNER, str(probe)], capture_output=True, text=True,
                                timeout=60)
        assert result.returncode != 0 and "blocked on the device" in result.stderr


def test_camera_frames_through_opencv(deploy_run, monkeypatch, capsys, pi_infer):
    frame_bgr = np.zeros((48, 64, 3), np.uint8)
    frame_bgr[..., 0] = 255  # blue in OpenCV's order

    class FakeCapture:
        def __init__(self, index):
            self.index = index

        def isOpened(self):
            return True

        def read(self):
            return True, frame_bgr.copy()

        def release(self):
            pass

    monkeypatch.setitem(sys.modules, "picamera2", None)  # not installed
    monkeypatch.setitem(sys.modules, "cv2", types.SimpleNamespace(VideoCapture=FakeCapture))
    frames = list(pi_infer.camera_frames(2, 0))
    assert [name for name, _ in frames] == ["camera:0", "camera:1"]
    assert tuple(frames[0][1][0, 0]) == (0, 0, 255)  # RGB now: the blue is last
    assert pi_infer.main([str(deploy_run / "exports" / "int8.tflite"), "--camera", "2", "--json", "--top-k", "1"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["file"] for r in records] == ["camera:0", "camera:1"]


@pytest.mark.parametrize("case, fragment", [
    ("missing_image", "image not found"),
    ("corrupt_model", "cannot load TFLite model"),
    ("keras_model", "not a TFLite model"),
    ("missing_model", "model file not found"),
    ("nothing", "give image files or folders"),
])
def test_pi_infer_errors_are_one_line(case, fragment, deploy_run, tmp_path, make_images):
    data = make_images(tmp_path / "imgs", per_class=1)
    model, inputs = deploy_run / "exports" / "int8.tflite", [str(data)]
    if case == "missing_image":
        inputs = [str(tmp_path / "nope.jpg")]
    elif case == "corrupt_model":
        model = tmp_path / "bad.tflite"
        model.write_bytes(np.random.default_rng(0).integers(0, 256, 2048, dtype=np.uint8).tobytes())
    elif case == "keras_model":
        model = deploy_run / "model.keras"
    elif case == "missing_model":
        model = tmp_path / "absent.tflite"
    elif case == "nothing":
        inputs = []
    result = subprocess.run([sys.executable, "-c", NO_TF_RUNNER, str(PI_INFER), str(model), *inputs],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.stderr


def test_pi_infer_without_sidecar_notes_the_assumptions(deploy_run, tmp_path, make_images, capsys, pi_infer):
    data = make_images(tmp_path / "imgs", per_class=1)
    model = tmp_path / "bare.tflite"
    model.write_bytes(strip_tflite((deploy_run / "exports" / "int8.tflite").read_bytes()))  # no embedded sidecar either
    assert pi_infer.main([str(model), str(data), "--top-k", "1"]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("note: no sidecar for bare.tflite")
    assert len(captured.out.strip().splitlines()) == 3


@pytest.mark.slow
def test_tflite_runtime_2_14_with_numpy_1(deploy_run, tmp_path, make_images):
    """A fresh venv with tflite-runtime 2.14 + numpy<2 (the Bookworm stack) gives the same answers."""
    python = tflite_runtime_214_python(tmp_path)
    data = make_images(tmp_path / "imgs", per_class=3)
    model = deploy_run / "exports" / "int8.tflite"
    result = subprocess.run([str(python), str(PI_INFER), str(model), str(data), "--json", "--top-k", "2"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    device = json.loads(result.stdout)
    host = predict_files([model], [data], top_k=2)[0].records
    assert [r["top_k"][0]["label"] for r in device] == [r["top_k"][0]["label"] for r in host]
    versions = subprocess.run([str(python), "-c", "import numpy, tflite_runtime; print(numpy.__version__)"],
                              capture_output=True, text=True, timeout=60)
    assert versions.stdout.startswith("1.")
