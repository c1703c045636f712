"""edgecls.data.decode: bad files are skipped and reported; the second run reads the cache."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from edgecls.data import decode as decode_module
from edgecls.data.decode import ScanReport, decode_split, default_cache_root
from edgecls.data.images import load_image_array
from edgecls.errors import DataError


@pytest.fixture
def counted_decodes(monkeypatch):
    """Count calls to the image decoder used by decode_split."""
    calls = []

    def counting(path, size):
        calls.append(path)
        return load_image_array(path, size)

    monkeypatch.setattr(decode_module, "load_image_array", counting)
    return calls


@pytest.fixture
def mixed_files(tmp_path, make_images):
    """Six good images in two classes with three bad files among them, in a fixed order."""
    root = make_images(tmp_path / "data", classes=("a", "b"), per_class=3)
    (root / "a" / "truncated.jpg").write_bytes((root / "a" / "img_000.jpg").read_bytes()[:200])
    (root / "b" / "notes.txt").write_text("hello")
    (root / "b" / "empty.png").write_bytes(b"")
    paths = [
        root / "a/img_000.jpg", root / "a/truncated.jpg", root / "a/img_001.png", root / "a/img_002.jpg",
        root / "b/notes.txt", root / "b/img_000.jpg", root / "b/empty.png", root / "b/img_001.png",
        root / "b/img_002.jpg",
    ]
    labels = [0, 0, 0, 0, 1, 1, 1, 1, 1]
    return paths, labels


def test_default_cache_root(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGECLS_CACHE", str(tmp_path / "c"))
    assert default_cache_root() == tmp_path / "c"
    monkeypatch.delenv("EDGECLS_CACHE")
    assert default_cache_root() == Path.home() / ".cache" / "edgecls"


def test_bad_files_are_skipped_and_reported(tmp_path, mixed_files, counted_decodes):
    paths, labels = mixed_files
    split = decode_split(paths, labels, (12, 10), cache_root=tmp_path / "cache", progress=False)
    assert split.images.shape == (6, 12, 10, 3) and split.images.dtype == np.uint8
    assert isinstance(split.images, np.memmap) and not split.images.flags.writeable
    assert split.labels.dtype == np.int32 and split.labels.tolist() == [0, 0, 0, 1, 1, 1]
    good = [p for p in paths if p.name.startswith("img_")]
    assert split.paths == [str(p) for p in good]
    assert split.bad == [
        (str(paths[1]), "truncated image"),
        (str(paths[4]), "not an image"),
        (str(paths[6]), "empty file"),
    ]
    for row, path in zip(split.images, good):
        np.testing.assert_array_equal(row, load_image_array(path, (12, 10)))
    assert len(counted_decodes) == len(paths)


def test_second_call_reads_the_cache(tmp_path, mixed_files, counted_decodes):
    paths, labels = mixed_files
    first = decode_split(paths, labels, 8, cache_root=tmp_path / "cache", progress=False)
    counted_decodes.clear()
    second = decode_split([str(p) for p in paths], labels, 8, cache_root=tmp_path / "cache", progress=False)
    assert counted_decodes == []
    np.testing.assert_array_equal(first.images, second.images)
    assert (first.paths, first.bad, first.labels.tolist()) == (second.paths, second.bad, second.labels.tolist())


def test_cache_is_refreshed_by_changes(tmp_path, mixed_files, counted_decodes):
    paths, labels = mixed_files
    cache = tmp_path / "cache"
    decode_split(paths, labels, 8, cache_root=cache, progress=False)
    for changed in (
        dict(size=9),
        dict(labels=[1 - label for label in labels]),
    ):
        counted_decodes.clear()
        decode_split(paths, changed.get("labels", labels), changed.get("size", 8), cache_root=cache, progress=False)
        assert len(counted_decodes) == len(paths), changed
    counted_decodes.clear()
    stat = paths[0].stat()
    os.utime(paths[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    decode_split(paths, labels, 8, cache_root=cache, progress=False)
    assert len(counted_decodes) == len(paths)


def test_a_cache_without_its_record_is_not_trusted(tmp_path, mixed_files, counted_decodes):
    paths, labels = mixed_files
    cache = tmp_path / "cache"
    decode_split(paths, labels, 8, cache_root=cache, progress=False)
    (record,) = (cache / "arrays").glob("*.json")
    assert json.loads(record.read_text())["kept_indices"] == [0, 2, 3, 5, 7, 8]
    record.unlink()
    counted_decodes.clear()
    split = decode_split(paths, labels, 8, cache_root=cache, progress=False)
    assert len(counted_decodes) == len(paths) and len(split.paths) == 6
    assert sorted(p.suffix for p in (cache / "arrays").iterdir()) == [".json", ".npy"]


def test_all_bad_and_empty_inputs(tmp_path):
    (tmp_path / "x.jpg").write_text("no")
    split = decode_split([tmp_path / "x.jpg"], [0], 4, cache_root=tmp_path / "c", progress=False)
    assert split.images.shape == (0, 4, 4, 3) and split.paths == [] and len(split.bad) == 1
    again = decode_split([tmp_path / "x.jpg"], [0], 4, cache_root=tmp_path / "c", progress=False)
    assert again.images.shape == (0, 4, 4, 3) and again.bad == split.bad
    empty = decode_split([], [], (4, 5), cache_root=tmp_path / "c", progress=False)
    assert empty.images.shape == (0, 4, 5, 3) and empty.labels.dtype == np.int32


def test_unwritable_cache_is_a_data_error(tmp_path, mixed_files):
    paths, labels = mixed_files
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be")
    with pytest.raises(DataError, match="cannot write the image cache"):
        decode_split(paths, labels, 8, cache_root=blocker, progress=False)


def test_progress_bar_runs(tmp_path, mixed_files):
    paths, labels = mixed_files
    split = decode_split(paths, labels, 8, cache_root=tmp_path / "cache", desc="checking", progress=True)
    assert len(split.paths) == 6


def test_scan_report(tmp_path, mixed_files):
    paths, labels = mixed_files
    train = decode_split(paths, labels, 8, cache_root=tmp_path / "cache", progress=False)
    val = decode_split(paths[:1], labels[:1], 8, cache_root=tmp_path / "cache", progress=False)
    report = ScanReport.from_splits(
        {"train": train, "val": val}, classes=["a", "b"], archive_skipped=[("../x", "'..' in path")]
    )
    assert report.kept == {"train": 6, "val": 1} and report.skipped_counts == {"train": 3, "val": 0}
    assert report.summary_lines() == [
        "train: 6 images, 3 skipped (1 truncated image, 1 not an image, 1 empty file) — see skipped_files.txt",
        "val: 1 image",
        "archive: 1 entry not extracted (1 '..' in path) — see skipped_files.txt",
    ]
    run = tmp_path / "run"
    report.write(run)
    scan = json.loads((run / "data_scan.json").read_text())
    assert scan["splits"]["train"] == {"kept": 6, "skipped": 3, "per_class": {"a": 3, "b": 3}}
    assert scan["splits"]["val"]["per_class"] == {"a": 1, "b": 0}
    assert scan["skipped"][0] == {"split": "train", "path": str(paths[1]), "reason": "truncated image"}
    lines = (run / "skipped_files.txt").read_text().splitlines()
    assert lines[0] == f"{paths[1]}\ttruncated image"
    assert lines[-1] == "../x\tnot extracted from the archive: '..' in path"
    assert len(lines) == 4


def test_scan_report_survives_awkward_names(tmp_path):
    awkward = tmp_path / os.fsdecode(b"not-utf8-\xff\tand tab\nnewline.jpg")
    awkward.write_bytes(b"")
    split = decode_split([awkward], [0], 4, cache_root=tmp_path / "cache", progress=False)
    report = ScanReport.from_splits({"train": split}, classes=["a", "b"])
    report.write(tmp_path / "run")
    (line,) = (tmp_path / "run" / "skipped_files.txt").read_text(encoding="utf-8").splitlines()
    name, reason = line.split("\t")
    assert reason == "empty file"
    assert name.endswith("not-utf8-\\udcff and tab newline.jpg")
