"""Image files and folders given on the command line, loaded with the one loader into uint8 batches.

A path that does not exist is a user mistake (an error); a file that exists but cannot be decoded
is skipped, counted and reported, so one bad photo in a folder never stops a prediction run.
``pi_infer.py`` has its own copy of these rules (it cannot import edgecls) and is tested against
this module.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgecls.data.images import IMAGE_EXTENSIONS, BadImage, load_image_array
from edgecls.errors import EdgeclsError


@dataclass
class LoadedImages:
    images: np.ndarray  # uint8 (N, H, W, 3), resized with the one resize
    files: list[str]  # the kept files, in input order, spelled as given (folders joined with names)
    bad: list[tuple[str, str]] = field(default_factory=list)  # (file, reason) skipped


def expand_inputs(inputs) -> list[str]:
    """Files named directly (any extension: the decoder decides) and image files found in folders.

    Folders are walked recursively in sorted order, hidden entries left out, and only files with an
    image extension taken, so notes or metadata beside the photos do not count as bad images.
    """
    files: list[str] = []
    for given in inputs:
        path = Path(given)
        if path.is_dir():
            found = _image_files_in(path)
            if not found:
                raise EdgeclsError(f"no image files in folder {given}")
            files.extend(found)
        elif path.is_file():
            files.append(os.fspath(given))
        else:
            raise EdgeclsError(f"image not found: {given}")
    if not files:
        raise EdgeclsError("give at least one image file or folder")
    return files


def _image_files_in(folder: Path) -> list[str]:
    found = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                found.append(os.path.join(root, name))
    return found


def load_images(files, size) -> LoadedImages:
    """``load_rgb`` + ``resize_rgb`` for every file; undecodable ones go to ``bad``."""
    height, width = (size, size) if isinstance(size, int) else size
    arrays, kept, bad = [], [], []
    for name in files:
        try:
            arrays.append(load_image_array(name, (height, width)))
            kept.append(os.fspath(name))
        except BadImage as err:
            bad.append((os.fspath(name), err.reason))
    images = np.stack(arrays) if arrays else np.zeros((0, height, width, 3), np.uint8)
    return LoadedImages(images, kept, bad)


def load_inputs(inputs, size) -> LoadedImages:
    """``expand_inputs`` then ``load_images``; an error when not a single image could be used."""
    loaded = load_images(expand_inputs(inputs), size)
    if not loaded.files:
        first, reason = loaded.bad[0]
        more = f" (and {len(loaded.bad) - 1} more)" if len(loaded.bad) > 1 else ""
        raise EdgeclsError(f"no usable image: {first}: {reason}{more}")
    return loaded


def skipped_note(bad) -> str | None:
    """One line for stderr about skipped files, or None when nothing was skipped."""
    if not bad:
        return None
    first, reason = bad[0]
    more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
    return f"note: skipped {len(bad)} file{'s' if len(bad) != 1 else ''} that are not usable images: {first} ({reason}){more}"
