"""Issue 6, data side: bad files in a dataset and hostile archives never crash and never escape.

Runs without TensorFlow (the data layer never imports it), so these need no heavy-work lock.
"""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from reliability_files import LEGAL, hostile_dataset, png_header

from edgecls.data.decode import ScanReport, decode_split
from edgecls.data.images import BadImage, load_rgb
from edgecls.data.layout import find_dataset
from edgecls.errors import DataError

PROPERTY = settings(max_examples=50, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


# --- every kind of odd file, through the decoder the trainer uses ---

def test_odd_images_are_kept_as_rgb_and_broken_files_are_skipped_with_a_reason(tmp_path):
    legal, broken = hostile_dataset(tmp_path / "data", normal_per_class=1)
    names = sorted(legal) + sorted(broken)
    split = decode_split([tmp_path / "data" / n for n in names], [0] * len(names), (16, 16),
                         cache_root=tmp_path / "cache", progress=False)
    kept = {Path(p).relative_to(tmp_path / "data").as_posix() for p in split.paths}
    assert kept == set(legal)
    assert split.images.shape == (len(legal), 16, 16, 3) and split.images.dtype == np.uint8
    reasons = {Path(p).relative_to(tmp_path / "data").as_posix(): r for p, r in split.bad}
    assert set(reasons) == set(broken)
    for name, expected in broken.items():
        assert reasons[name] and reasons[name].startswith(expected), (name, reasons[name])


def test_legal_odd_images_have_the_right_colours(tmp_path):
    for name, write in LEGAL.items():
        write(tmp_path / name)
    pixel = {name: load_rgb(tmp_path / name).getpixel((0, 0)) for name in LEGAL}
    assert pixel["grayscale.png"] == (90, 90, 90)
    assert pixel["rgba half transparent.png"] == (255, 127, 127)  # half-transparent red over white
    assert pixel["sixteen_bit.png"] == (156,) * 3  # 40000 / 65535 * 255, not clipped to white
    assert pixel["one_pixel.png"] == (0, 255, 0)
    assert load_rgb(tmp_path / "exif_rotated.jpg").size == (6, 12)  # stored 12x6, shown upright
    cmyk = pixel["cmyk.jpg"]
    assert cmyk[1] < 100 and cmyk[0] > 200 and cmyk[2] > 200  # magenta ink: green is absorbed
    assert abs(pixel["palette.gif"][2] - 240) <= 8


def test_scan_report_lists_every_broken_file_in_the_run_folder_and_the_console(tmp_path):
    legal, broken = hostile_dataset(tmp_path / "data", normal_per_class=1)
    names = sorted(legal) + sorted(broken)
    split = decode_split([tmp_path / "data" / n for n in names], [0] * (len(names) - 2) + [1, 1], (8, 8),
                         cache_root=tmp_path / "cache", progress=False)
    report = ScanReport.from_splits({"train": split}, ["a", "b"])
    report.write(tmp_path / "run")
    listed = (tmp_path / "run" / "skipped_files.txt").read_text(encoding="utf-8").splitlines()
    assert len(listed) == len(broken)
    for name in broken:
        assert any(line.startswith(str(tmp_path / "data" / name) + "\t") for line in listed), name
    (line,) = report.summary_lines()
    assert line.startswith(f"train: {len(legal)} images, {len(broken)} skipped (")
    assert "skipped_files.txt" in line


@pytest.mark.parametrize("width, height", [(100_000, 100_000), (9_500, 9_500), (65_535, 65_535)],
                         ids=["100x-limit", "just-over-limit", "max-jpeg-side"])
def test_a_real_decompression_bomb_is_refused_at_the_header(tmp_path, width, height):
    # No monkeypatched limit: these are PIL's defaults, and the file is 70 bytes. If the loader
    # decoded before checking, 9500x9500 would allocate ~270 MB and 65535² would fail to.
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header(width, height))
    with pytest.raises(BadImage, match="too large"):
        load_rgb(path)


# --- property-based: whatever the header claims, RGB or BadImage, never an allocation storm ---

SMALL_SIDE = st.integers(1, 48)
HUGE_SIDE = st.integers(20_000, 2**31 - 1)
PNG_KINDS = st.sampled_from([(1, 0), (8, 0), (16, 0), (8, 2), (16, 2), (8, 3), (8, 4), (8, 6), (16, 6), (4, 3)])


@pytest.mark.filterwarnings("ignore::UserWarning")
@PROPERTY
@given(size=st.one_of(st.tuples(SMALL_SIDE, SMALL_SIDE), st.tuples(HUGE_SIDE, HUGE_SIDE),
                      st.tuples(SMALL_SIDE, HUGE_SIDE).map(lambda s: (s[0] * 4000, s[1]))),
       kind=PNG_KINDS, payload=st.binary(max_size=200))
def test_png_headers_claiming_any_size_give_rgb_or_bad_image(tmp_path, size, kind, payload):
    width, height = size
    path = tmp_path / "claims.png"
    path.write_bytes(png_header(width, height, bit_depth=kind[0], colour_type=kind[1], payload=payload))
    try:
        img = load_rgb(path)
    except BadImage as exc:
        assert exc.reason
        if width * height > Image.MAX_IMAGE_PIXELS:
            assert exc.reason.startswith("too large")
    else:
        assert img.mode == "RGB" and img.size == (width, height)
        assert width * height <= Image.MAX_IMAGE_PIXELS


def _image_bytes(mode: str, fmt: str, side: int) -> bytes:
    buffer = io.BytesIO()
    img = Image.new(mode, (side, side))
    (img.convert("L") if fmt == "JPEG" and mode in ("P", "1") else img).save(buffer, format=fmt)
    return buffer.getvalue()


IMAGE_FILES = st.builds(_image_bytes, st.sampled_from(["RGB", "L", "P", "1"]),
                        st.sampled_from(["PNG", "JPEG", "BMP", "GIF", "TIFF"]), st.integers(1, 20))
ANY_FILE = st.one_of(
    IMAGE_FILES,
    IMAGE_FILES.flatmap(lambda data: st.integers(0, len(data)).map(lambda cut: data[:cut])),  # truncated
    st.binary(max_size=400),
    st.just(b""),
)


@pytest.mark.filterwarnings("ignore::UserWarning")
@PROPERTY
@given(files=st.lists(ANY_FILE, min_size=1, max_size=8), names=st.data())
def test_a_split_of_random_files_never_raises_and_accounts_for_every_file(files, names):
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        paths = []
        for index, data in enumerate(files):
            suffix = names.draw(st.sampled_from([".jpg", ".png", ".txt", "", ".JPEG", " ü.gif"]))
            path = scratch / f"f{index}{suffix}"
            path.write_bytes(data)
            paths.append(path)
        labels = [i % 2 for i in range(len(paths))]
        split = decode_split(paths, labels, (8, 8), cache_root=scratch / "cache", progress=False)
        kept = [os.fspath(p) for p in split.paths]
        bad = [p for p, _ in split.bad]
        assert sorted(kept + bad) == sorted(os.fspath(p) for p in paths)
        assert split.images.shape == (len(kept), 8, 8, 3)
        assert all(reason for _, reason in split.bad)


# --- property-based: a random archive given as DATA is a dataset or a DataError, never an escape ---

OUTER = "<outer>"
ENTRY_NAMES = st.sampled_from([
    "top/a/1.png", "top/b/2.png", "top/a/x.txt", "a/3.png", "b/4.png", "top/c/5.png", "top/a/sub/6.png",
    "../escape.png", "top/../../escape2.png", "/abs.png", OUTER + "/planted.png", "C:/win.png", "..\\bs.png",
    "top/", "top/a/", "top/.hidden/7.png", "__MACOSX/a/8.png", "top/a/caf\u00e9 \u732b.png",
])
ENTRY_KINDS = st.sampled_from(["file", "file", "file", "symlink", "hardlink", "dir"])
LINK_TARGETS = st.sampled_from(["..", "../../..", "/etc/passwd", OUTER, OUTER + "/planted.png", "top/a/1.png"])
TINY_PNG = _image_bytes("RGB", "PNG", 2)


def _random_archive(outer: Path, kind: str, entries) -> Path:
    def real(text: str) -> str:
        return text.replace(OUTER, str(outer))

    if kind == "zip":
        path = outer / "data.zip"
        modes = {"file": 0o100644, "dir": 0o040755, "symlink": 0o120777, "hardlink": 0o100644}
        with zipfile.ZipFile(path, "w") as zf:
            for name, entry_kind, target in entries:
                info = zipfile.ZipInfo(real(name) + ("/" if entry_kind == "dir" and not name.endswith("/") else ""))
                info.external_attr = modes[entry_kind] << 16
                zf.writestr(info, real(target).encode() if entry_kind == "symlink" else
                            b"" if entry_kind == "dir" else TINY_PNG)
        return path
    path = outer / f"data.{kind}"
    with tarfile.open(path, "w:gz" if kind == "tar.gz" else "w") as tar:
        for name, entry_kind, target in entries:
            info = tarfile.TarInfo(real(name))
            data = None
            if entry_kind == "dir" or name.endswith("/"):
                info.type = tarfile.DIRTYPE
            elif entry_kind == "file":
                info.size, data = len(TINY_PNG), io.BytesIO(TINY_PNG)
            else:
                info.type = tarfile.SYMTYPE if entry_kind == "symlink" else tarfile.LNKTYPE
                info.linkname = real(target)
            tar.addfile(info, data)
    return path


@pytest.mark.filterwarnings("ignore:Duplicate name")  # duplicates are part of the game
@PROPERTY
@given(kind=st.sampled_from(["zip", "tar", "tar.gz"]),
       entries=st.lists(st.tuples(ENTRY_NAMES, ENTRY_KINDS, LINK_TARGETS), max_size=10))
def test_a_random_archive_is_a_dataset_inside_the_cache_or_a_data_error(kind, entries):
    with tempfile.TemporaryDirectory() as scratch:
        outer = Path(scratch)
        archive = _random_archive(outer, kind, entries)
        cache = outer / "cache"
        cache.mkdir()
        before = sorted(p.name for p in outer.iterdir())
        try:
            found = find_dataset(archive, cache_root=cache)
        except DataError as exc:
            assert str(exc) and "\n" not in str(exc)
        else:
            extracted = os.path.realpath(cache / "archives")
            for paths, _ in found.splits.values():
                for path in paths:
                    assert os.path.commonpath([extracted, os.path.realpath(path)]) == extracted
            assert len(found.classes) >= 2
        assert sorted(p.name for p in outer.iterdir()) == before
        assert not (outer / "planted.png").exists()
        if (cache / "archives").exists():
            for path in (cache / "archives").rglob("*"):
                assert not path.is_symlink()


def test_a_hostile_archive_dataset_is_extracted_inside_and_its_refusals_are_reported(tmp_path):
    # The user-facing path: DATA is an archive from a stranger. Each trick is skipped with a
    # reason that reaches skipped_files.txt and the console; the good part is still a dataset.
    outer = tmp_path / "outer"
    outer.mkdir()
    entries = [("top/a/1.png", "file", ""), ("top/a/2.png", "file", ""), ("top/b/3.png", "file", ""),
               ("top/b/4.png", "file", ""), ("../escape.png", "file", ""), (f"{outer}/planted.png", "file", ""),
               ("top/a/link_out", "symlink", "../../../../outside"), ("top/b/hard_out", "hardlink", "/etc/passwd")]
    for kind in ("zip", "tar", "tar.gz"):
        archive = _random_archive(tmp_path, kind, entries)
        found = find_dataset(archive, cache_root=tmp_path / "cache")
        assert found.classes == ["a", "b"]
        reasons = dict(found.archive_skipped)
        assert reasons["../escape.png"] == "'..' in path"
        assert reasons[f"{outer}/planted.png"] == "absolute path"
        assert reasons["top/a/link_out"].startswith("link")
        if kind != "zip":  # zip has no hard links
            assert reasons["top/b/hard_out"].startswith("link")
        assert list(outer.iterdir()) == [] and not (tmp_path / "escape.png").exists()
        report = ScanReport(kept={"train": 4}, skipped_counts={"train": 0}, per_class={}, skipped=[],
                            archive_skipped=found.archive_skipped)
        assert any(line.startswith("archive: ") and "not extracted" in line for line in report.summary_lines())
        report.write(tmp_path / f"run_{kind}")
        listed = (tmp_path / f"run_{kind}" / "skipped_files.txt").read_text(encoding="utf-8")
        assert "../escape.png\tnot extracted from the archive: '..' in path" in listed


# --- nothing is ever unpickled ---

class _Booby:
    """Unpickling this creates ``marker``: proof that a pickle was loaded."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_planted_pickle_in_the_image_cache_is_not_loaded(tmp_path, make_images):
    # The cache lives under the user's home and is shared between runs; whoever can write there
    # must not be able to run code through it.
    data = make_images(tmp_path / "data", classes=("a", "b"), per_class=2)
    paths = sorted(data.rglob("*.*"))
    first = decode_split(paths, [0, 0, 1, 1], (8, 8), cache_root=tmp_path / "cache", progress=False)
    expected = np.array(first.images)
    (cached,) = (tmp_path / "cache" / "arrays").glob("*.npy")
    marker = tmp_path / "pwned"
    np.save(cached, np.array([_Booby(str(marker))], dtype=object), allow_pickle=True)
    again = decode_split(paths, [0, 0, 1, 1], (8, 8), cache_root=tmp_path / "cache", progress=False)
    assert not marker.exists()
    np.testing.assert_array_equal(again.images, expected)  # decoded afresh instead


SOURCE_DIRS = [Path(__file__).resolve().parents[1] / d for d in ("edgecls", "benchmarks")]


def _calls(name_tail: str):
    import ast

    for folder in SOURCE_DIRS:
        for path in sorted(folder.rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.Call):
                    func = ast.unparse(node.func)
                    if func == name_tail or func.endswith("." + name_tail):
                        yield path, node, {k.arg: ast.unparse(k.value) for k in node.keywords if k.arg}


def test_every_numpy_load_refuses_pickles_and_every_keras_load_is_safe_mode():
    numpy_loads = list(_calls("np.load")) + list(_calls("numpy.load"))
    assert numpy_loads, "the image cache uses np.load; if that changed, update this test"
    for path, node, keywords in numpy_loads:
        assert keywords.get("allow_pickle") == "False", f"{path}:{node.lineno} np.load without allow_pickle=False"
    keras_loads = list(_calls("load_model"))
    assert keras_loads
    for path, node, keywords in keras_loads:
        assert keywords.get("safe_mode") == "True", f"{path}:{node.lineno} load_model without safe_mode=True"
    for path, node, _ in _calls("yaml.load"):
        raise AssertionError(f"{path}:{node.lineno} yaml.load (use yaml.safe_load)")


def test_no_module_imports_a_deserialiser_that_runs_code():
    import ast

    unsafe = {"pickle", "cPickle", "dill", "joblib", "marshal", "shelve", "cloudpickle"}
    for folder in SOURCE_DIRS:
        for path in sorted(folder.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                for name in names:
                    assert name.split(".")[0] not in unsafe, f"{path}:{node.lineno} imports {name}"


# --- a writer killed with SIGKILL mid-write ---

_SLOW_WRITER = """
import sys, time
from edgecls.fsutil import atomic_path
with atomic_path(sys.argv[1]) as tmp, open(tmp, "wb") as out:
    out.write(b"half of the new model"); out.flush()
    print("writing", flush=True)
    time.sleep(120)
"""


def test_a_writer_killed_mid_write_leaves_the_previous_file_and_its_temp_is_cleaned_later(tmp_path):
    import signal
    import subprocess
    import sys

    from edgecls.fsutil import remove_stale_temps

    target = tmp_path / "exports" / "int8.tflite"
    target.parent.mkdir()
    target.write_bytes(b"the previous, complete model")
    writer = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "writing"
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    assert target.read_bytes() == b"the previous, complete model"
    (leftover,) = target.parent.glob(".tmp-*")  # kill -9 gives no chance to clean up...
    assert leftover.name.endswith("-int8.tflite")
    assert remove_stale_temps(tmp_path) == [leftover]  # ...so a resumed run does it
    assert [p.name for p in target.parent.iterdir()] == ["int8.tflite"]
