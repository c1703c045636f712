"""edgecls.data.archive: nothing in an archive may land outside the destination."""

from __future__ import annotations

import io
import os
import struct
import tarfile
import tempfile
import warnings
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgecls.data import archive as archive_module
from edgecls.data.archive import LINK_REASON, extract_archive, extracted_dataset, is_archive
from edgecls.errors import DataError


def write_tar(path: Path, entries, mode: str = "w:gz") -> Path:
    """entries: (name, kind, payload); kind is file|dir|symlink|hardlink|fifo|chr, payload bytes or a link target."""
    with tarfile.open(path, mode) as tar:
        for name, kind, payload in entries:
            info = tarfile.TarInfo(name)
            data = None
            if kind == "file":
                info.size, data = len(payload), io.BytesIO(payload)
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind in ("symlink", "hardlink"):
                info.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
                info.linkname = payload
            else:
                info.type = {"fifo": tarfile.FIFOTYPE, "chr": tarfile.CHRTYPE}[kind]
            tar.addfile(info, data)
    return path


def write_zip(path: Path, entries) -> Path:
    """entries: (name, payload) or (name, payload, unix_mode)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, payload, *mode in entries:
            info = zipfile.ZipInfo(name)
            if mode:
                info.external_attr = mode[0] << 16
            zf.writestr(info, payload)
    return path


def everything_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}


@pytest.fixture
def box(tmp_path):
    """A folder holding only the destination, so anything else appearing in it escaped."""
    folder = tmp_path / "box"
    folder.mkdir()
    return folder


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("d.zip", True), ("d.ZIP", True), ("d.tar", True), ("d.tar.gz", True), ("d.TGZ", True),
        ("d.tar.bz2", True), ("d.tar.xz", True), ("d.gz", False), ("d.rar", False), ("zip", False),
    ],
)
def test_is_archive(name, expected):
    assert is_archive(name) is expected


@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2", "w:xz"])
def test_clean_tar_extracts(tmp_path, box, mode):
    archive = write_tar(
        tmp_path / "data.tar",
        [("top", "dir", None), ("top/cats/1.jpg", "file", b"one"), ("top/dogs/sub/2.jpg", "file", b"two")],
        mode,
    )
    result = extract_archive(archive, box / "dest")
    assert result.root == box / "dest" and result.skipped == []
    assert (box / "dest/top/cats/1.jpg").read_bytes() == b"one"
    assert (box / "dest/top/dogs/sub/2.jpg").read_bytes() == b"two"
    assert sorted(p.name for p in box.iterdir()) == ["dest"]  # the staging folder is gone


def test_clean_zip_extracts(tmp_path, box):
    entries = [("top/", b""), ("top/cats/1.jpg", b"one"), ("top/caf\u00e9 x.png", b"u")]
    archive = write_zip(tmp_path / "data.zip", entries)
    result = extract_archive(archive, box / "dest")
    assert result.skipped == []
    assert everything_under(box / "dest") == {"top", "top/cats", "top/cats/1.jpg", "top/caf\u00e9 x.png"}


def test_tar_escapes_are_skipped(tmp_path, box):
    archive = write_tar(
        tmp_path / "evil.tar.gz",
        [
            ("../escaped.txt", "file", b"x"),
            ("ok/../../escaped2.txt", "file", b"x"),
            ("/tmp/absolute.txt", "file", b"x"),
            ("C:/windows.txt", "file", b"x"),
            ("..\\backslash.txt", "file", b"x"),
            ("link_out", "symlink", "../../outside"),
            ("link_abs", "symlink", "/etc"),
            ("link_in", "symlink", "ok/fine.txt"),
            ("hard_out", "hardlink", "/etc/passwd"),
            ("fifo", "fifo", None),
            ("device", "chr", None),
            ("link_out/through_link.txt", "file", b"lands in a real folder"),
            ("ok/fine.txt", "file", b"fine"),
        ],
    )
    result = extract_archive(archive, box / "dest")
    reasons = dict(result.skipped)
    assert reasons == {
        "../escaped.txt": "'..' in path",
        "ok/../../escaped2.txt": "'..' in path",
        "/tmp/absolute.txt": "absolute path",
        "C:/windows.txt": "drive letter in path",
        "..\\backslash.txt": "'..' in path",
        "link_out": LINK_REASON,
        "link_abs": LINK_REASON,
        "link_in": LINK_REASON,
        "hard_out": LINK_REASON,
        "fifo": "FIFO",
        "device": "device file",
    }
    assert sorted(p.name for p in box.iterdir()) == ["dest"]
    assert everything_under(box / "dest") == {"ok", "ok/fine.txt", "link_out", "link_out/through_link.txt"}
    assert not any(p.is_symlink() for p in (box / "dest").rglob("*"))


def test_zip_slip_and_zip_symlinks_are_skipped(tmp_path, box):
    archive = write_zip(
        tmp_path / "evil.zip",
        [
            ("../slip.txt", b"x"),
            ("a/../../slip2.txt", b"x"),
            ("..\\slip3.txt", b"x"),
            ("/abs.txt", b"x"),
            ("D:\\drive.txt", b"x"),
            ("symlink", b"../../outside", 0o120777),
            ("fifo", b"", 0o010644),
            ("good/1.txt", b"1", 0o100644),
        ],
    )
    result = extract_archive(archive, box / "dest")
    reasons = dict(result.skipped)
    assert reasons["symlink"] == LINK_REASON and reasons["fifo"] == "FIFO"
    assert reasons["/abs.txt"] == "absolute path" and reasons["D:\\drive.txt"] == "drive letter in path"
    assert {reasons[n] for n in ("../slip.txt", "a/../../slip2.txt", "..\\slip3.txt")} == {"'..' in path"}
    assert everything_under(box / "dest") == {"good", "good/1.txt"}
    assert sorted(p.name for p in box.iterdir()) == ["dest"]


@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_too_many_entries_is_refused(tmp_path, box, kind):
    names = [f"f{i}.txt" for i in range(5)]
    if kind == "tar":
        archive = write_tar(tmp_path / "many.tar", [(n, "file", b"x") for n in names], "w")
    else:
        archive = write_zip(tmp_path / "many.zip", [(n, b"x") for n in names])
    with pytest.raises(DataError, match="more than 3 entries"):
        extract_archive(archive, box / "dest", max_files=3)
    assert list(box.iterdir()) == []


@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_too_many_bytes_is_refused(tmp_path, box, kind):
    if kind == "tar":
        archive = write_tar(tmp_path / "big.tar.gz", [("big.bin", "file", b"\0" * 5000)])
    else:
        archive = write_zip(tmp_path / "big.zip", [("big.bin", b"\0" * 5000)])
    with pytest.raises(DataError, match="more than 1000 bytes"):
        extract_archive(archive, box / "dest", max_total_bytes=1000)
    assert list(box.iterdir()) == []


def test_zip_entry_bigger_than_declared_is_refused(tmp_path, box):
    archive = write_zip(tmp_path / "liar.zip", [("zeros.bin", b"\0" * 100_000)])
    data = bytearray(archive.read_bytes())
    # Declare 10 bytes in both the local header and the central directory.
    struct.pack_into("<I", data, 22, 10)
    central = data.index(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 24, 10)
    archive.write_bytes(bytes(data))
    with pytest.raises(DataError, match="cannot read archive"):
        extract_archive(archive, box / "dest")
    assert list(box.iterdir()) == []


def test_an_entry_yielding_more_than_declared_is_refused_whatever_the_reader(tmp_path):
    # zipfile and tarfile stop at the declared size themselves; the writer must not rely on it.
    writer = archive_module._EntryWriter(tmp_path / "a.zip", tmp_path, 10**6, 10)
    with pytest.raises(DataError, match="holds more data than it declares"):
        writer.write_file("x.bin", tmp_path / "x.bin", io.BytesIO(b"\0" * 100), declared_size=10)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("junk.tar.gz", b"this is not gzip at all" * 10),
        ("junk.zip", b"PK\x03\x04 definitely broken" * 10),
        ("junk.tar", b"\x01" * 2048),
        ("empty.zip", b""),
    ],
)
def test_corrupt_archives_raise_data_error(tmp_path, box, name, content):
    archive = tmp_path / name
    archive.write_bytes(content)
    with pytest.raises(DataError, match=f"cannot read archive .*{name}"):
        extract_archive(archive, box / "dest")
    assert list(box.iterdir()) == []


def test_truncated_tar_gz_raises_data_error(tmp_path, box):
    archive = write_tar(tmp_path / "cut.tar.gz", [(f"f{i}", "file", bytes(range(256)) * 40) for i in range(5)])
    archive.write_bytes(archive.read_bytes()[:-200])
    with pytest.raises(DataError, match="cannot read archive"):
        extract_archive(archive, box / "dest")
    assert list(box.iterdir()) == []


def test_encrypted_zip_entries_are_skipped(tmp_path, box):
    archive = write_zip(tmp_path / "enc.zip", [("secret.txt", b"not really encrypted"), ("plain.txt", b"plain")])
    # zipfile cannot write encrypted entries: set the "encrypted" flag of the first one by hand.
    data = bytearray(archive.read_bytes())
    data[6] |= 0x1
    data[data.index(b"PK\x01\x02") + 8] |= 0x1
    archive.write_bytes(bytes(data))
    result = extract_archive(tmp_path / "enc.zip", box / "dest")
    assert result.skipped == [("secret.txt", "encrypted")]
    assert everything_under(box / "dest") == {"plain.txt"}


def test_non_empty_destination_is_refused(tmp_path, box):
    archive = write_zip(tmp_path / "a.zip", [("x.txt", b"x")])
    (box / "dest").mkdir()
    (box / "dest" / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty"):
        extract_archive(archive, box / "dest")
    assert (box / "dest" / "keep.txt").read_text() == "mine"


def test_interrupted_extraction_leaves_nothing_that_looks_complete(tmp_path, box, monkeypatch):
    archive = write_tar(tmp_path / "a.tar", [("a.txt", "file", b"a"), ("b.txt", "file", b"b")], "w")
    real_write = archive_module._EntryWriter.write_file
    calls = []

    def write_then_interrupt(self, *args):
        calls.append(args[0])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_write(self, *args)

    monkeypatch.setattr(archive_module._EntryWriter, "write_file", write_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        extract_archive(archive, box / "dest")
    assert list(box.iterdir()) == []


def test_same_name_as_file_and_folder_is_skipped(tmp_path, box):
    archive = write_tar(tmp_path / "clash.tar", [("x", "file", b"1"), ("x/y", "file", b"2"), ("d/", "dir", None),
                                                 ("d", "file", b"3")], "w")
    result = extract_archive(archive, box / "dest")
    assert [name for name, _ in result.skipped] == ["x/y", "d"]
    assert (box / "dest" / "x").read_bytes() == b"1"


def test_extracted_dataset_is_reused_and_refreshed_when_the_archive_changes(tmp_path, monkeypatch):
    archive = write_tar(tmp_path / "d.tar.gz", [("top/a/1.txt", "file", b"1"), ("../bad", "file", b"x")])
    cache = tmp_path / "cache"
    folder, skipped = extracted_dataset(archive, cache)
    assert folder.parent == cache / "archives"
    assert (folder / "top/a/1.txt").read_bytes() == b"1"
    assert skipped == [("../bad", "'..' in path")]

    calls = []
    monkeypatch.setattr(archive_module, "extract_archive", lambda *a, **k: calls.append(a))
    assert extracted_dataset(archive, cache) == (folder, skipped)
    assert calls == []
    monkeypatch.undo()

    write_tar(archive, [("top/a/2.txt", "file", b"22")])
    newer, skipped = extracted_dataset(archive, cache)
    assert newer != folder and skipped == []
    assert (newer / "top/a/2.txt").read_bytes() == b"22"


def test_extracted_dataset_redoes_an_extraction_without_its_record(tmp_path):
    archive = write_zip(tmp_path / "d.zip", [("a/1.txt", b"1")])
    folder, _ = extracted_dataset(archive, tmp_path / "cache")
    folder.with_name(folder.name + ".json").unlink()
    (folder / "a/1.txt").unlink()
    again, _ = extracted_dataset(archive, tmp_path / "cache")
    assert again == folder and (folder / "a/1.txt").read_bytes() == b"1"


# --- property-based: whatever the archive holds, only DataError, and nothing outside dest ---

OUTER = "<outer>"  # replaced by the real temporary folder, so absolute names aim at something we check

name_parts = st.one_of(
    st.sampled_from(["a", "b", "..", ".", "", "c d", "\u00e9t\u00e9", "C:", "x\\..", "..\\y", "__MACOSX", ".h"]),
    st.text(alphabet="ab.\\/:", min_size=1, max_size=4),
)
entry_names = st.builds(
    lambda lead, parts: lead + "/".join(parts),
    # Leads that aim outside are common on purpose: a random mix of parts rarely climbs out.
    st.sampled_from(["", "", "/", "./", "\\", "../", "../../", "..\\", "a/../../", OUTER + "/"]),
    st.lists(name_parts, min_size=1, max_size=4),
)
link_targets = st.sampled_from(["..", "../..", "/", "/etc/passwd", "a", "a/../..", "../out", OUTER, OUTER + "/x"])
tar_entries = st.lists(
    st.tuples(entry_names, st.sampled_from(["file", "file", "dir", "symlink", "hardlink", "fifo", "chr"]),
              link_targets, st.binary(max_size=40)),
    max_size=12,
)
zip_entries = st.lists(
    st.tuples(entry_names, st.sampled_from(["file", "file", "dir", "symlink", "fifo"]), link_targets,
              st.binary(max_size=40)),
    max_size=12,
)
limits = st.sampled_from([{}, {"max_files": 5}, {"max_total_bytes": 60}])
PROPERTY_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _extract_confined(build, entries, extra_limits) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        outer = Path(scratch)
        box = outer / "box"
        box.mkdir()

        def real(text: str) -> str:
            return text.replace(OUTER, str(outer))

        archive = build(outer, [(real(name), kind, real(target), data) for name, kind, target, data in entries])
        before = sorted(p.name for p in outer.iterdir())
        try:
            result = extract_archive(archive, box / "dest", **extra_limits)
        except DataError:
            assert list(box.iterdir()) == []
        else:
            assert result.root == box / "dest"
            assert [p.name for p in box.iterdir()] == ["dest"]
            dest = os.path.realpath(box / "dest")
            for path in (box / "dest").rglob("*"):
                assert not path.is_symlink()
                assert path.is_file() or path.is_dir()
                assert os.path.commonpath([dest, os.path.realpath(path)]) == dest
        assert sorted(p.name for p in outer.iterdir()) == before


def _build_tar(outer: Path, entries) -> Path:
    spec = []
    for name, kind, target, data in entries:
        spec.append((name, kind, data if kind == "file" else target if "link" in kind else None))
    return write_tar(outer / "random.tar.gz", spec)


def _build_zip(outer: Path, entries) -> Path:
    modes = {"file": 0o100644, "dir": 0o040755, "symlink": 0o120777, "fifo": 0o010644}
    spec = []
    for name, kind, target, data in entries:
        if kind == "dir":
            name = name.rstrip("/") + "/"
        spec.append((name, target.encode() if kind == "symlink" else data, modes[kind]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names are part of the game
        return write_zip(outer / "random.zip", spec)


@PROPERTY_SETTINGS
@given(entries=tar_entries, extra_limits=limits)
def test_random_tar_layouts_stay_inside_dest(entries, extra_limits):
    _extract_confined(_build_tar, entries, extra_limits)


@PROPERTY_SETTINGS
@given(entries=zip_entries, extra_limits=limits)
def test_random_zip_layouts_stay_inside_dest(entries, extra_limits):
    _extract_confined(_build_zip, entries, extra_limits)


def _valid_archive_bytes(kind: str) -> bytes:
    with tempfile.TemporaryDirectory() as scratch:
        entries = [("top/a/1.txt", b"one" * 30), ("top/b/2.txt", b"two" * 30)]
        if kind == "zip":
            path = write_zip(Path(scratch) / "v.zip", entries)
        else:
            path = write_tar(Path(scratch) / "v.tar.gz", [(n, "file", d) for n, d in entries])
        return path.read_bytes()


VALID_ARCHIVES = {kind: _valid_archive_bytes(kind) for kind in ("zip", "tar.gz")}


@PROPERTY_SETTINGS
@given(kind=st.sampled_from(sorted(VALID_ARCHIVES)), data=st.data())
def test_damaged_archives_only_raise_data_error(kind, data):
    original = bytearray(VALID_ARCHIVES[kind])
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(original) - 1), st.integers(0, 255)), max_size=6))
    cut = data.draw(st.integers(0, len(original)))
    for position, value in flips:
        original[position] = value
    with tempfile.TemporaryDirectory() as scratch:
        archive = Path(scratch) / f"damaged.{kind}"
        archive.write_bytes(bytes(original[:cut]))
        try:
            extract_archive(archive, Path(scratch) / "box" / "dest")
        except DataError:
            pass
