"""A real, tiny, offline dataset for demos and tests: scikit-learn's bundled 8x8 digits."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from edgecls.errors import DataError

DIGIT_CLASSES = tuple(str(d) for d in range(10))
# Size of sklearn.datasets.load_digits(); checking it avoids importing scikit-learn on reuse.
DIGITS_IMAGE_COUNT = 1797


def write_digits_dataset(out_dir: str | os.PathLike) -> Path:
    """Write the digits as ``out_dir/<digit>/<index>.png`` (8x8 grayscale) and return ``out_dir``.

    The folder appears complete or not at all (it is written beside and renamed), and an
    already complete one is reused as is.
    """
    out_dir = Path(out_dir)
    if _is_complete(out_dir):
        return out_dir
    if out_dir.exists() and not (out_dir.is_dir() and not any(out_dir.iterdir())):
        raise DataError(f"{out_dir} exists but is not a complete digits dataset: remove it or pick another folder")

    from sklearn.datasets import load_digits  # slow to import, and only needed here

    digits = load_digits()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    try:
        for digit in DIGIT_CLASSES:
            (staging / digit).mkdir()
        for index, (values, target) in enumerate(zip(digits.images, digits.target)):
            # The bundled values are 0..16 (counts of set pixels in 4x4 blocks).
            gray = np.clip(np.rint(values * (255.0 / 16.0)), 0, 255).astype(np.uint8)
            Image.fromarray(gray).save(staging / str(int(target)) / f"{index:04d}.png")
        try:
            os.replace(staging, out_dir)
        except OSError:
            if not _is_complete(out_dir):  # unless another process finished first
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def _is_complete(folder: Path) -> bool:
    if not folder.is_dir():
        return False
    if sorted(p.name for p in folder.iterdir()) != sorted(DIGIT_CLASSES):
        return False
    return sum(1 for digit in DIGIT_CLASSES for _ in (folder / digit).glob("*.png")) == DIGITS_IMAGE_COUNT
