"""Decode, check and cache every image of a split once.

The first run decodes each file (in threads: PIL releases the GIL while decoding) and
writes the resized pixels to an .npy file in the cache; later runs with the same files,
labels and size memory-map that file instead of decoding again. Bad files are skipped
and reported, never raised.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgecls.data.images import RESIZE_METHOD, BadImage, height_width, load_image_array
from edgecls.errors import DataError, UnwritableError
from edgecls.fsutil import atomic_path, write_json, write_text
from edgecls.progress import progress_bar
from edgecls.run_folder import SKIPPED_FILES, RunFolder

# Bump when the cache files change meaning, so old ones are ignored rather than misread.
CACHE_FORMAT_VERSION = 1


def default_cache_root() -> Path:
    """``$EDGECLS_CACHE`` if set, else ``~/.cache/edgecls``."""
    configured = os.environ.get("EDGECLS_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "edgecls"


@dataclass
class DecodedSplit:
    images: np.ndarray  # uint8 (N, H, W, 3), memory-mapped read-only from the cache
    labels: np.ndarray  # int32 (N,)
    paths: list[str]  # the kept files, in the same order as images
    bad: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


def decode_split(
    paths: Sequence[str | os.PathLike],
    labels: Sequence[int],
    size: int | tuple[int, int],
    *,
    cache_root: str | os.PathLike,
    desc: str = "decoding",
    progress: bool = True,
) -> DecodedSplit:
    """Decode and resize every file (see ``images.resize_rgb``), skipping and listing bad ones."""
    if len(paths) != len(labels):
        raise ValueError(f"got {len(paths)} paths but {len(labels)} labels")
    height, width = height_width(size)
    names = [os.fspath(p) for p in paths]
    labels = [int(label) for label in labels]
    if not names:
        return DecodedSplit(np.zeros((0, height, width, 3), np.uint8), np.zeros(0, np.int32), [], [])

    stem = Path(cache_root) / "arrays" / _cache_key(names, labels, height, width)
    array_path, record_path = stem.with_suffix(".npy"), stem.with_suffix(".json")
    cached = _load_cached(array_path, record_path, names, labels, (height, width))
    if cached is not None:
        return cached
    try:
        return _decode_and_cache(names, labels, (height, width), array_path, record_path, desc, progress)
    except (OSError, UnwritableError) as exc:
        reason = getattr(exc, "reason", "") or getattr(exc, "strerror", "") or str(exc)
        raise DataError(
            f"cannot write the image cache in {stem.parent}: {reason} "
            "(set EDGECLS_CACHE to a writable folder with free space)"
        ) from None


def _cache_key(names: list[str], labels: list[int], height: int, width: int) -> str:
    digest = hashlib.sha256(f"v{CACHE_FORMAT_VERSION}\0{RESIZE_METHOD}\0{height}x{width}\n".encode())
    for name, label in zip(names, labels):
        path = Path(name).resolve()
        try:
            info = path.stat()
            stamp = f"{info.st_size}\0{info.st_mtime_ns}"
        except OSError:
            stamp = "missing"
        digest.update(f"{path}\0{stamp}\0{label}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:32]


def _load_cached(array_path, record_path, names, labels, hw) -> DecodedSplit | None:
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        if record.get("format") != CACHE_FORMAT_VERSION:
            return None
        kept = [int(i) for i in record["kept_indices"]]
        bad_reasons = {int(i): str(reason) for i, reason in record["bad"]}
        images = np.load(array_path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # missing or damaged: decode again
    if sorted(kept + list(bad_reasons)) != list(range(len(names))) or images.shape != (len(names), *hw, 3):
        return None
    bad = [(names[i], reason) for i, reason in sorted(bad_reasons.items())]
    # Paths come from this call, not the record, so the caller's spelling is kept.
    return _decoded(images, names, labels, kept, bad)


def _decoded(images, names, labels, kept, bad) -> DecodedSplit:
    # The file has a row per input with the kept images packed at the front, so the
    # split is a slice of the memory map (a view, not a copy).
    return DecodedSplit(
        images=images[: len(kept)],
        labels=np.asarray([labels[i] for i in kept], dtype=np.int32),
        paths=[names[i] for i in kept],
        bad=bad,
    )


def _decode_and_cache(names, labels, hw, array_path, record_path, desc, progress) -> DecodedSplit:
    array_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(array_path) as scratch:
        # open_memmap keeps memory flat however large the dataset; rows are written in
        # input order so the cache is identical from run to run.
        pixels = np.lib.format.open_memmap(scratch, mode="w+", dtype=np.uint8, shape=(len(names), *hw, 3))
        _reserve(scratch)
        kept, reasons = _decode_into(pixels, names, hw, desc, progress)
        pixels.flush()
        del pixels
    bad = [(names[i], reasons[i]) for i in sorted(reasons)]
    # Written last: a cache entry without its record is never trusted.
    write_json(
        record_path,
        {
            "format": CACHE_FORMAT_VERSION,
            "size": list(hw),
            "resize_method": RESIZE_METHOD,
            "kept_indices": kept,
            "paths": [names[i] for i in kept],
            "labels": [labels[i] for i in kept],
            "bad": [[i, reasons[i]] for i in sorted(reasons)],
        },
    )
    return _decoded(np.load(array_path, mmap_mode="r", allow_pickle=False), names, labels, kept, bad)


def _reserve(path: Path) -> None:
    """Give the sparse memory-mapped file real blocks now: a page the disk cannot back, written
    through the map later, kills the process with SIGBUS, which no OSError handler sees."""
    if not hasattr(os, "posix_fallocate"):
        return  # Windows: a full disk under a mapped view is an error there, not a signal
    with open(path, "r+b") as handle:
        os.posix_fallocate(handle.fileno(), 0, os.fstat(handle.fileno()).st_size)  # ENOSPC: an OSError


def _decode_into(pixels, names, hw, desc, progress) -> tuple[list[int], dict[int, str]]:
    kept: list[int] = []
    reasons: dict[int, str] = {}
    workers = os.cpu_count() or 1
    # A bounded window keeps only a few decoded images in memory while results are
    # consumed in input order.
    window = 4 * workers
    with _quiet_pil(), progress_bar(desc, len(names), enabled=progress) as advance, ThreadPoolExecutor(workers) as pool:
        pending: deque = deque()

        def consume_oldest() -> None:
            index, future = pending.popleft()
            array, reason = future.result()
            if reason is None:
                pixels[len(kept)] = array
                kept.append(index)
            else:
                reasons[index] = reason
            advance()

        for index, name in enumerate(names):
            pending.append((index, pool.submit(_decode_one, name, hw)))
            if len(pending) >= window:
                consume_oldest()
        while pending:
            consume_oldest()
    return kept, reasons


def _decode_one(name: str, hw: tuple[int, int]) -> tuple[np.ndarray | None, str | None]:
    try:
        return load_image_array(name, hw), None
    except BadImage as exc:
        return None, exc.reason


@contextlib.contextmanager
def _quiet_pil():
    # PIL warns about odd metadata ("Corrupt EXIF data", ...) while decoding; across a
    # dataset that floods the console, and what matters (the file is unusable) goes to
    # the scan report anyway. Entered once here, before the workers start and after they
    # end, so the process-wide filter list is not raced.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
        yield


@dataclass
class ScanReport:
    """What the decoder kept and skipped in each split, for the console and the run folder."""

    kept: dict[str, int]
    skipped_counts: dict[str, int]
    per_class: dict[str, dict[str, int]]
    skipped: list[tuple[str, str, str]]  # (split, path, reason)
    archive_skipped: list[tuple[str, str]] = field(default_factory=list)  # (entry, reason)

    @classmethod
    def from_splits(
        cls,
        splits: Mapping[str, DecodedSplit],
        classes: Sequence[str],
        archive_skipped: Sequence[tuple[str, str]] = (),
    ) -> ScanReport:
        per_class = {}
        for name, split in splits.items():
            counts = np.bincount(np.asarray(split.labels, dtype=np.int64), minlength=len(classes))
            per_class[name] = {cls_name: int(counts[i]) for i, cls_name in enumerate(classes)}
        return cls(
            kept={name: len(split.paths) for name, split in splits.items()},
            skipped_counts={name: len(split.bad) for name, split in splits.items()},
            per_class=per_class,
            skipped=[(name, path, reason) for name, split in splits.items() for path, reason in split.bad],
            archive_skipped=[(str(entry), str(reason)) for entry, reason in archive_skipped],
        )

    def write(self, run_dir: str | os.PathLike) -> None:
        """Write ``data_scan.json`` and ``skipped_files.txt`` (path<TAB>reason) into ``run_dir``."""
        run = RunFolder(run_dir)
        write_json(
            run.data_scan,
            {
                "splits": {
                    name: {
                        "kept": self.kept[name],
                        "skipped": self.skipped_counts.get(name, 0),
                        "per_class": self.per_class.get(name, {}),
                    }
                    for name in self.kept
                },
                "skipped": [{"split": s, "path": p, "reason": r} for s, p, r in self.skipped],
                "archive_skipped": [{"entry": e, "reason": r} for e, r in self.archive_skipped],
            },
        )
        lines = [f"{_one_line(path)}\t{_one_line(reason)}" for _, path, reason in self.skipped]
        lines += [f"{_one_line(entry)}\tnot extracted from the archive: {_one_line(reason)}"
                  for entry, reason in self.archive_skipped]
        write_text(run.skipped_files, "".join(line + "\n" for line in lines))

    def summary_lines(self) -> list[str]:
        """One line per split, e.g. "train: 1748 images, 2 skipped (1 truncated image, 1 not an image) ..."."""
        lines = []
        for name, kept in self.kept.items():
            reasons = [reason for split, _, reason in self.skipped if split == name]
            line = f"{name}: {_count(kept, 'image')}"
            if reasons:
                line += f", {len(reasons)} skipped ({_breakdown(reasons)}) — see {SKIPPED_FILES}"
            lines.append(line)
        if self.archive_skipped:
            reasons = [reason for _, reason in self.archive_skipped]
            entries = _count(len(reasons), "entry", "entries")
            lines.append(f"archive: {entries} not extracted ({_breakdown(reasons)}) — see {SKIPPED_FILES}")
        return lines


def _count(n: int, singular: str, plural: str | None = None) -> str:
    return f"{n} {singular if n == 1 else plural or singular + 's'}"


def _breakdown(reasons: Sequence[str]) -> str:
    # "could not decode: <details>" varies per file; group by the part before the colon.
    kinds = Counter(reason.split(":", 1)[0].strip() for reason in reasons)
    return ", ".join(f"{count} {kind}" for kind, count in kinds.most_common())


def _one_line(text: str) -> str:
    # Tabs and newlines in names or messages would break the one-line-per-file format,
    # and names that are not valid UTF-8 (surrogate escapes) could not be written at all.
    printable = str(text).encode("utf-8", "backslashreplace").decode("utf-8")
    return " ".join(printable.replace("\t", " ").splitlines())
