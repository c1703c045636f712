"""edgecls.data.demo_digits: the offline demo dataset is written once, completely, as class folders."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from edgecls.data.demo_digits import DIGITS_IMAGE_COUNT, write_digits_dataset
from edgecls.data.layout import find_dataset
from edgecls.errors import DataError


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return write_digits_dataset(tmp_path_factory.mktemp("demo") / "digits")


def test_digits_are_written_as_class_folders_of_8x8_pngs(digits):
    assert sorted(p.name for p in digits.iterdir()) == [str(d) for d in range(10)]
    files = sorted(digits.glob("*/*.png"))
    assert len(files) == DIGITS_IMAGE_COUNT
    with Image.open(digits / "0" / "0000.png") as first:
        assert first.mode == "L" and first.size == (8, 8)
        pixels = np.asarray(first)
    assert pixels.min() == 0 and pixels.max() > 200  # 0..16 stretched to 0..255
    assert not list(digits.parent.glob(".*partial"))


def test_a_complete_folder_is_reused(digits):
    before = {p: p.stat().st_mtime_ns for p in digits.glob("3/*.png")}
    assert write_digits_dataset(digits) == digits
    assert {p: p.stat().st_mtime_ns for p in digits.glob("3/*.png")} == before


def test_a_foreign_folder_is_not_overwritten(tmp_path):
    (tmp_path / "digits").mkdir()
    (tmp_path / "digits" / "mine.txt").write_text("keep")
    with pytest.raises(DataError, match="not a complete digits dataset"):
        write_digits_dataset(tmp_path / "digits")
    assert (tmp_path / "digits" / "mine.txt").read_text() == "keep"


def test_digits_are_a_valid_dataset(digits, tmp_path):
    dataset = find_dataset(digits, cache_root=tmp_path / "cache")
    assert dataset.classes == [str(d) for d in range(10)]
    assert sum(len(paths) for paths, _ in dataset.splits.values()) == DIGITS_IMAGE_COUNT
