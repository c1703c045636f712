"""From a DATA path to decoded, checked train/val/test arrays, with the scan report in the run folder."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from edgecls.config import RunConfig
from edgecls.data.decode import DecodedSplit, ScanReport, decode_split, default_cache_root
from edgecls.data.layout import find_dataset
from edgecls.errors import DataError

SPLITS = ("train", "val", "test")


@dataclasses.dataclass
class PreparedData:
    classes: list[str]
    train: DecodedSplit
    val: DecodedSplit
    test: DecodedSplit
    split_source: str
    report: ScanReport

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def cache_root(config: RunConfig) -> Path:
    return Path(config.data.cache_dir).expanduser() if config.data.cache_dir else default_cache_root()


def prepare_data(config: RunConfig, run_dir: Path | None, *, verbose: int = 1) -> PreparedData:
    """Find, split, decode and cache the dataset of ``config``; with ``run_dir``, write its scan report there."""
    d = config.data
    fractions = {"train": 1.0 - d.val_fraction - d.test_fraction, "val": d.val_fraction, "test": d.test_fraction}
    files = find_dataset(d.path, fractions=fractions, seed=d.seed, cache_root=cache_root(config))
    decoded = {}
    for split in SPLITS:
        paths, labels = files.splits[split]
        decoded[split] = decode_split(paths, labels, d.img_size, cache_root=cache_root(config),
                                      desc=f"checking {split} images", progress=bool(verbose))
    report = ScanReport.from_splits(decoded, classes=files.classes, archive_skipped=files.archive_skipped)
    if run_dir is not None:
        report.write(run_dir)
    if verbose:
        print(f"dataset {files.root}: {len(files.classes)} classes; {files.split_source}")
        for line in report.summary_lines():
            print(f"  {line}")
    _check_trainable(decoded["train"], files.classes, d.path)
    return PreparedData(files.classes, decoded["train"], decoded["val"], decoded["test"], files.split_source,
                        report)


def _check_trainable(train: DecodedSplit, classes: list[str], path) -> None:
    present = set(int(label) for label in train.labels)
    if not present:
        raise DataError(f"no readable training images in {path}")
    missing = [name for index, name in enumerate(classes) if index not in present]
    if missing:
        raise DataError(f"no readable training images for class(es) {', '.join(missing)} in {path}")
