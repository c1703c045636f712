"""Safe extraction of dataset archives (.zip and .tar with any common compression).

Archives come from strangers, so nothing in one may write outside the destination:
entries are checked one by one and written by this module (never by ``extractall``),
links of every kind and special files are skipped, file modes are not applied, and the
number of entries and the bytes written are bounded. Extraction happens in a hidden
folder beside the destination that is renamed into place only when complete.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import re
import shutil
import stat
import struct
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO

from edgecls.errors import DISK_FULL_ERRNOS, DataError
from edgecls.fsutil import write_json
from edgecls.results import ExtractResult

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
DEFAULT_MAX_TOTAL_BYTES = 50 * 2**30
DEFAULT_MAX_FILES = 2_000_000

LINK_REASON = "link (links are never extracted)"

_CHUNK = 1 << 20
_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")
# What a damaged or hostile archive makes the readers raise; all of it means "cannot read".
_READ_ERRORS = (
    tarfile.TarError,
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
    EOFError,
    OSError,
    ValueError,
    struct.error,
)


def is_archive(path: str | os.PathLike) -> bool:
    """True when the name ends with a supported archive suffix (case-insensitive)."""
    return Path(path).name.lower().endswith(ARCHIVE_SUFFIXES)


def extract_archive(
    archive: str | os.PathLike,
    dest: str | os.PathLike,
    *,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
    max_files: int = DEFAULT_MAX_FILES,
) -> ExtractResult:
    """Extract ``archive`` into ``dest`` (which must not exist, or be an empty folder).

    Skipped entries (unsafe paths, links, special files, name clashes) are returned with
    a reason. Raises DataError when the archive is unreadable or exceeds the limits.
    """
    archive, dest = Path(archive), Path(dest)
    if dest.exists() and not (dest.is_dir() and not any(dest.iterdir())):
        raise DataError(f"cannot extract {archive} into {dest}: it already exists and is not empty")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    except OSError as exc:
        raise DataError(f"cannot create a folder beside {dest}: {exc.strerror or exc}") from None
    try:
        writer = _EntryWriter(archive, staging, max_total_bytes, max_files)
        try:
            if archive.name.lower().endswith(".zip"):
                _extract_zip(archive, writer)
            else:
                _extract_tar(archive, writer)
        except _READ_ERRORS as exc:
            raise DataError(f"cannot read archive {archive}: {_one_line(exc)}") from None
        try:
            os.replace(staging, dest)
        except OSError as exc:
            raise DataError(f"cannot move the extracted files to {dest}: {exc.strerror or exc}") from None
        return ExtractResult(root=dest, skipped=writer.skipped)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def extracted_dataset(archive: str | os.PathLike, cache_root: str | os.PathLike) -> tuple[Path, list]:
    """Extract ``archive`` once into the cache and return (folder, skipped entries).

    The folder is keyed by the archive's resolved path, size and modification time, so a
    changed archive is extracted again and an unchanged one is reused.
    """
    archive = Path(archive).expanduser().resolve()
    try:
        info = archive.stat()
    except OSError as exc:
        raise DataError(f"cannot read archive {archive}: {exc.strerror or exc}") from None
    key = hashlib.sha256(f"{archive}\0{info.st_size}\0{info.st_mtime_ns}".encode("utf-8", "surrogateescape"))
    folder = Path(cache_root) / "archives" / key.hexdigest()[:24]
    # The record is written after the rename, so a folder without one is an interrupted run.
    record = folder.with_name(folder.name + ".json")
    skipped = _read_record(record)
    if skipped is not None and folder.is_dir():
        return folder, skipped
    if folder.exists():
        shutil.rmtree(folder, ignore_errors=True)
    try:
        result = extract_archive(archive, folder)
    except DataError:
        skipped = _read_record(record)
        if skipped is not None and folder.is_dir():  # another process finished it first
            return folder, skipped
        raise
    write_json(record, {"archive": str(archive), "skipped": result.skipped})
    return folder, result.skipped


def _read_record(record: Path) -> list[tuple[str, str]] | None:
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
        return [(str(name), str(reason)) for name, reason in data["skipped"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None


class _EntryWriter:
    """Writes checked entries under ``root`` and keeps the counts the limits apply to."""

    def __init__(self, archive: Path, root: Path, max_total_bytes: int, max_files: int):
        self.archive = archive
        self.root = root
        self.real_root = os.path.realpath(root)
        self.max_total_bytes = max_total_bytes
        self.max_files = max_files
        self.entries = 0
        self.declared_bytes = 0
        self.skipped: list[tuple[str, str]] = []

    def check_totals(self, entries: int, declared_bytes: int) -> None:
        if entries > self.max_files:
            raise DataError(
                f"archive {self.archive} holds more than {self.max_files} entries; "
                "extract it yourself if you trust it and pass the folder"
            )
        if declared_bytes > self.max_total_bytes:
            raise DataError(
                f"archive {self.archive} expands to more than {self.max_total_bytes} bytes; "
                "extract it yourself if you trust it and pass the folder"
            )

    def count(self, declared_size: int) -> None:
        self.entries += 1
        self.declared_bytes += max(0, declared_size)
        self.check_totals(self.entries, self.declared_bytes)

    def skip(self, name: str, reason: str) -> None:
        self.skipped.append((name, reason))

    def target(self, name: str) -> Path | None:
        """The path ``name`` may be written to, or None after recording why it may not."""
        reason = _unsafe_name_reason(name)
        if reason:
            self.skip(name, reason)
            return None
        parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
        if not parts:
            return self.root
        target = self.root.joinpath(*parts)
        # Cannot fail while no links are written; kept so a future change cannot slip by.
        if os.path.commonpath([self.real_root, os.path.realpath(target)]) != self.real_root:
            self.skip(name, "path leads outside the destination")
            return None
        return target

    def make_dir(self, name: str, target: Path) -> None:
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._write_failed(name, exc)

    def write_file(self, name: str, target: Path, source: BinaryIO, declared_size: int) -> None:
        if target == self.root:
            self.skip(name, "empty name")
            return
        if target.is_dir():
            self.skip(name, "a folder of the same name exists")
            return
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            out = open(target, "wb")
        except OSError as exc:
            self._write_failed(name, exc)
            return
        with out:
            complete = self._copy_bounded(name, source, out, declared_size)
        if not complete:
            # A half-written file would later look like a truncated image; leave none behind.
            target.unlink(missing_ok=True)

    def _copy_bounded(self, name: str, source: BinaryIO, out: BinaryIO, declared_size: int) -> bool:
        written = 0
        while chunk := source.read(_CHUNK):
            written += len(chunk)
            # Readers stop at the declared size today; this keeps it true if one does not.
            if written > declared_size:
                raise DataError(f"cannot read archive {self.archive}: entry {name!r} holds more data than it declares")
            try:
                out.write(chunk)
                out.flush()  # so that closing the file has nothing left to fail on
            except OSError as exc:
                self._write_failed(name, exc)
                return False
        return True

    def _write_failed(self, name: str, exc: OSError) -> None:
        if exc.errno in DISK_FULL_ERRNOS:
            raise DataError(f"no disk space left to extract {self.archive} beside {self.root.parent}") from None
        self.skip(name, f"cannot write: {exc.strerror or exc}")


def _unsafe_name_reason(name: str) -> str | None:
    if "\x00" in name:
        return "NUL byte in name"
    # Zips made on Windows sometimes use backslashes; treating them as separators means
    # "..\\x" is caught like "../x" instead of becoming an odd file name.
    unified = name.replace("\\", "/")
    if unified.startswith("/"):
        return "absolute path"
    if _DRIVE_LETTER.match(unified):
        return "drive letter in path"
    if ".." in unified.split("/"):
        return "'..' in path"
    return None


def _extract_tar(archive: Path, writer: _EntryWriter) -> None:
    # Stream mode reads the archive once, whatever its compression; members are checked
    # as they arrive, so the limits stop a huge archive early.
    with tarfile.open(archive, mode="r|*") as tar:
        for member in tar:
            writer.count(member.size if member.isfile() else 0)
            target = writer.target(member.name)
            if target is None:
                continue
            reason = _tar_member_reason(member, writer.root)
            if reason:
                writer.skip(member.name, reason)
                continue
            if member.isdir():
                writer.make_dir(member.name, target)
                continue
            source = tar.extractfile(member)
            if source is None:
                writer.skip(member.name, "unsupported entry type")
                continue
            with source:
                writer.write_file(member.name, target, source, member.size)


def _tar_member_reason(member: tarfile.TarInfo, root: Path) -> str | None:
    if member.issym() or member.islnk():
        return LINK_REASON
    if member.ischr() or member.isblk():
        return "device file"
    if member.isfifo():
        return "FIFO"
    if not (member.isfile() or member.isdir()):
        return "unsupported entry type"
    # Python's own "data" filter (3.11.4+) as a second opinion on what we already allow.
    data_filter = getattr(tarfile, "data_filter", None)
    if data_filter is not None:
        try:
            data_filter(member, str(root))
        except tarfile.FilterError as exc:
            return f"refused by tarfile data filter: {_one_line(exc)}"
    return None


def _extract_zip(archive: Path, writer: _EntryWriter) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        # The central directory declares everything up front, so refuse before writing.
        writer.check_totals(len(infos), sum(max(0, i.file_size) for i in infos if not _zip_is_dir(i)))
        for info in infos:
            writer.count(0 if _zip_is_dir(info) else info.file_size)
            target = writer.target(info.filename)
            if target is None:
                continue
            reason = _zip_entry_reason(info)
            if reason:
                writer.skip(info.filename, reason)
                continue
            if _zip_is_dir(info):
                writer.make_dir(info.filename, target)
                continue
            try:
                source = zf.open(info)
            except NotImplementedError as exc:
                writer.skip(info.filename, f"unsupported compression: {_one_line(exc)}")
                continue
            with source:
                writer.write_file(info.filename, target, source, info.file_size)


def _zip_is_dir(info: zipfile.ZipInfo) -> bool:
    # ZipInfo.is_dir() fails with IndexError on an empty name, which hostile zips can have.
    return info.filename.endswith("/")


def _zip_entry_reason(info: zipfile.ZipInfo) -> str | None:
    unix_mode = info.external_attr >> 16
    kind = stat.S_IFMT(unix_mode)
    if stat.S_ISLNK(unix_mode):
        return LINK_REASON
    if stat.S_ISCHR(unix_mode) or stat.S_ISBLK(unix_mode):
        return "device file"
    if stat.S_ISFIFO(unix_mode):
        return "FIFO"
    if kind and not (stat.S_ISREG(unix_mode) or stat.S_ISDIR(unix_mode)):
        return "unsupported entry type"
    if info.flag_bits & 0x1:
        return "encrypted"
    return None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
