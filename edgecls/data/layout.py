"""What a DATA path means: find the class folders, the splits and the candidate files.

Two layouts are understood, below any number of wrapper folders:

  (a) class folders directly:      DATA/cats/..., DATA/dogs/...
  (b) split folders holding them:  DATA/train/cats/..., DATA/test/cats/... (val optional)

Missing splits are carved out deterministically (see ``split.stratified_split``).
Every regular file inside a class folder is a candidate; the decoder decides later
which ones are images, so odd extensions still work and strays are reported, not lost.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from edgecls.data.archive import ARCHIVE_SUFFIXES, extracted_dataset, is_archive
from edgecls.data.decode import default_cache_root
from edgecls.data.split import stratified_split, validate_fractions
from edgecls.errors import DataError

SPLIT_NAMES = ("train", "val", "test")
DEFAULT_FRACTIONS = MappingProxyType({"train": 0.7, "val": 0.2, "test": 0.1})
SPLIT_FOLDER_ALIASES = MappingProxyType(
    {
        "train": "train",
        "training": "train",
        "val": "val",
        "valid": "val",
        "validation": "val",
        "test": "test",
        "testing": "test",
    }
)


@dataclass
class DatasetFiles:
    root: Path
    classes: list[str]
    splits: dict[str, tuple[list[Path], list[int]]]  # "train"/"val"/"test" -> (paths, labels)
    split_source: str
    archive_skipped: list = field(default_factory=list)  # (entry, reason) left out of the archive


def find_dataset(
    path: str | os.PathLike,
    *,
    fractions: Mapping[str, float] = DEFAULT_FRACTIONS,
    seed: int = 0,
    cache_root: str | os.PathLike | None = None,
) -> DatasetFiles:
    """Resolve a folder or archive into class names and train/val/test file lists.

    ``fractions`` (train/val/test) are used for splits that have no folder of their own;
    archives are extracted once under ``cache_root`` (default: ``default_cache_root()``).
    Raises DataError with one sentence naming the path when the data cannot be used.
    """
    fractions = _checked_fractions(fractions)
    path = Path(path).expanduser()
    archive_skipped: list = []
    if not path.exists():
        raise DataError(f"dataset not found: {path} does not exist")
    if path.is_dir():
        top = path
    elif path.is_file() and is_archive(path):
        cache = Path(cache_root) if cache_root is not None else default_cache_root()
        top, archive_skipped = extracted_dataset(path, cache)
    else:
        raise DataError(f"{path} is neither a folder nor a supported archive ({', '.join(ARCHIVE_SUFFIXES)})")
    top = top.resolve()

    def shown(folder: Path) -> str:
        # Errors name what the user typed, even when the files live in the extraction cache.
        try:
            relative = folder.relative_to(top)
        except ValueError:  # reached through a symlinked wrapper folder
            return str(folder)
        return str(path) if relative == Path(".") else str(path / relative)

    root = _descend_wrappers(top)
    split_dirs, other_dirs = _split_folders(root, shown)
    if split_dirs:
        dataset = _from_split_folders(root, split_dirs, other_dirs, fractions, seed, shown)
    else:
        dataset = _from_class_folders(root, fractions, seed, shown)
    dataset.archive_skipped = archive_skipped
    return dataset


def _checked_fractions(fractions: Mapping[str, float]) -> dict[str, float]:
    unknown = sorted(set(fractions) - set(SPLIT_NAMES))
    if unknown:
        raise DataError(f"unknown split {unknown[0]!r} in the split fractions: use train, val and test")
    # train may be 0: evaluating on a plain class-folder tree puts everything in test.
    return validate_fractions({name: fractions.get(name, 0.0) for name in SPLIT_NAMES})


def _is_ignored(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


def _visible_entries(folder: Path, shown) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as entries:
            return sorted((e for e in entries if not _is_ignored(e.name)), key=lambda e: e.name)
    except OSError as exc:
        raise DataError(f"cannot read the folder {shown(folder)}: {exc.strerror or exc}") from None


def _descend_wrappers(folder: Path) -> Path:
    """Step into lone wrapper folders (typical of archives) until the dataset starts."""
    seen = set()
    while folder not in seen:
        seen.add(folder)
        entries = _visible_entries(folder, str)
        if len(entries) != 1 or not entries[0].is_dir():
            break
        inner = Path(entries[0].path)
        if entries[0].name.lower() in SPLIT_FOLDER_ALIASES:
            break  # a lone train/ folder is layout (b), not a wrapper
        if not any(e.is_dir() for e in _visible_entries(inner, str)):
            break  # a lone class folder: stop, so the one-class error names it
        folder = inner.resolve()
    return folder


def _split_folders(root: Path, shown) -> tuple[dict[str, Path], list[str]]:
    found: dict[str, Path] = {}
    others: list[str] = []
    for entry in _visible_entries(root, shown):
        if not entry.is_dir():
            continue
        split = SPLIT_FOLDER_ALIASES.get(entry.name.lower())
        if split is None:
            others.append(entry.name)
        elif split in found:
            raise DataError(
                f"{shown(root)} has two folders for the {split} split "
                f"('{found[split].name}' and '{entry.name}'): keep one"
            )
        else:
            found[split] = Path(entry.path)
    if found and "train" not in found:
        names = ", ".join(f"'{p.name}'" for p in found.values())
        raise DataError(f"{shown(root)} has split folders ({names}) but no train folder")
    return found, others


def _class_files(folder: Path, shown) -> tuple[int, dict[str, list[str]]]:
    """(number of class folders, class name -> relative paths of its files, empty ones left out)."""
    class_dirs = [e for e in _visible_entries(folder, shown) if e.is_dir()]
    files = {}
    for entry in class_dirs:
        found = _files_below(Path(entry.path), entry.name, shown)
        if found:
            files[entry.name] = found
    return len(class_dirs), files


def _files_below(folder: Path, prefix: str, shown) -> list[str]:
    # Relative posix paths (class/sub/name) are what the split hashes, so the split is
    # the same wherever the data lives. Hidden files are kept so they are reported;
    # links to folders are not followed, which rules out cycles.
    found, pending = [], [(folder, prefix)]
    while pending:
        current, relative = pending.pop()
        try:
            with os.scandir(current) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        if not _is_ignored(entry.name):
                            pending.append((Path(entry.path), f"{relative}/{entry.name}"))
                    elif entry.is_file():
                        found.append(f"{relative}/{entry.name}")
        except OSError as exc:
            raise DataError(f"cannot read the folder {shown(current)}: {exc.strerror or exc}") from None
    return sorted(found)


def _require_classes(folder_count: int, files: dict[str, list[str]], where: str) -> list[str]:
    if folder_count == 0:
        raise DataError(
            f"no class folders in {where}: expected one sub-folder per class "
            "(or train/, val/, test/ folders holding them)"
        )
    if not files:
        raise DataError(f"no files in the class folders of {where}")
    classes = sorted(files)
    if len(classes) == 1:
        raise DataError(f"found one class '{classes[0]}' in {where}: a classifier needs at least two")
    return classes


def _flatten(files: dict[str, list[str]], classes: list[str]) -> tuple[list[str], list[int]]:
    relpaths, labels = [], []
    for label, name in enumerate(classes):
        relpaths += files.get(name, [])
        labels += [label] * len(files.get(name, []))
    return relpaths, labels


def _percent(value: float) -> str:
    return f"{value * 100:g}"


def _from_class_folders(root: Path, fractions, seed: int, shown) -> DatasetFiles:
    folder_count, files = _class_files(root, shown)
    classes = _require_classes(folder_count, files, shown(root))
    relpaths, labels = _flatten(files, classes)
    parts = stratified_split(relpaths, labels, fractions, seed)
    splits = {
        name: ([root / relpaths[i] for i in parts[name]], [labels[i] for i in parts[name]]) for name in SPLIT_NAMES
    }
    shares = "/".join(_percent(fractions[name]) for name in SPLIT_NAMES)
    return DatasetFiles(root, classes, splits, f"generated {shares} (seed {seed})")


def _from_split_folders(root: Path, split_dirs, other_dirs, fractions, seed: int, shown) -> DatasetFiles:
    per_split = {name: _class_files(folder, shown) for name, folder in split_dirs.items()}
    train_dir = split_dirs["train"]
    classes = _require_classes(*per_split["train"], shown(train_dir))
    for name, (_, files) in per_split.items():
        extras = sorted(set(files) - set(classes))
        if extras:
            raise DataError(
                f"class '{extras[0]}' is in {shown(split_dirs[name])} but not in {shown(train_dir)}: "
                "every class needs training images"
            )

    train_relpaths, train_labels = _flatten(per_split["train"][1], classes)
    carved = [name for name in SPLIT_NAMES if name not in split_dirs and fractions[name] > 0]
    # Carved splits keep their share relative to each other and to train.
    shares = {name: fractions[name] for name in ("train", *carved)}
    total = sum(shares.values())
    if total > 0:
        parts = stratified_split(train_relpaths, train_labels, {k: v / total for k, v in shares.items()}, seed)
    else:  # nothing to carve and a train fraction of 0: the train folder still is the train split
        parts = {"train": list(range(len(train_relpaths)))}

    splits = {}
    for name in SPLIT_NAMES:
        if name in split_dirs and name != "train":
            relpaths, labels = _flatten(per_split[name][1], classes)
            splits[name] = ([split_dirs[name] / r for r in relpaths], labels)
        else:
            indices = parts.get(name, [])
            splits[name] = ([train_dir / train_relpaths[i] for i in indices], [train_labels[i] for i in indices])

    source = "folders: " + ", ".join(name for name in SPLIT_NAMES if name in split_dirs)
    if carved:
        source += f"; {', '.join(carved)} carved from train (seed {seed})"
    if other_dirs:
        source += f"; ignored folders: {', '.join(other_dirs)}"
    return DatasetFiles(root, classes, splits, source)
