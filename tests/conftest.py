"""Fixtures shared by the test suite. Keep each one small, documented and fast."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture
def make_images():
    """Factory writing small random-colour images as class folders; returns the root folder.

    ``make_images(root, classes=("a", "b", "c"), per_class=12, size=(20, 16))`` writes
    ``root/<class>/img_<i>.jpg|png`` (JPEG and PNG alternate), ``size`` being (width, height)
    as in PIL. Colours are seeded, so every run writes the same pixels.
    """
    seeds = itertools.count()

    def make(root, classes=("a", "b", "c"), per_class=12, size=(20, 16)) -> Path:
        root = Path(root)
        rng = np.random.default_rng(next(seeds))
        width, height = size
        for name in classes:
            folder = root / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                colour = rng.integers(0, 256, 3)
                noise = rng.integers(-20, 21, (height, width, 3))
                pixels = np.clip(colour + noise, 0, 255).astype(np.uint8)
                suffix = ".jpg" if i % 2 == 0 else ".png"
                Image.fromarray(pixels).save(folder / f"img_{i:03d}{suffix}")
        return root

    return make
