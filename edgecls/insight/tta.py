"""Test-time augmentation: each image is predicted under a few fixed transforms and averaged.

The transforms are a horizontal flip and shifts by a few pixels with a reflected border — what
edgecls trains with (random flips, translation, pad-and-crop) — in a fixed order, so a result is
the same on every run and ``count`` views always mean the same views. Flips are left out for a
run that trained without them: a mirrored digit is another digit.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from edgecls.errors import EdgeclsError

DEFAULT_COUNT = 8

# (flip, rows down, columns right) in units of the shift step. Identity first, so one view is the
# plain prediction; the flip next, as the cheapest and usually most useful second opinion; then
# shifts in balanced pairs.
_AXIS_SHIFTS = ((0, 1), (0, -1), (1, 0), (-1, 0))
_DIAGONAL_SHIFTS = ((1, 1), (1, -1), (-1, 1), (-1, -1))
_ORDER = (
    [(False, 0, 0), (True, 0, 0)]
    + [(False, dy, dx) for dy, dx in _AXIS_SHIFTS]
    + [(True, dy, dx) for dy, dx in _AXIS_SHIFTS]
    + [(False, dy, dx) for dy, dx in _DIAGONAL_SHIFTS]
    + [(True, dy, dx) for dy, dx in _DIAGONAL_SHIFTS]
)


@dataclasses.dataclass(frozen=True)
class View:
    flip: bool = False
    dy: int = 0  # pixels down (the image content moves down; the top row is reflected in)
    dx: int = 0  # pixels right

    @property
    def name(self) -> str:
        parts = (["flip"] if self.flip else []) + [f"{axis}{step:+d}" for axis, step in (("y", self.dy), ("x", self.dx))
                                                    if step]
        return "+".join(parts) or "identity"


def shift_step(height: int, width: int) -> int:
    """Pixels per shift: 1/16 of the shorter side (2 px at 32, 14 px at 224), at least one."""
    return max(1, round(min(height, width) / 16))


def max_views(*, flip: bool = True) -> int:
    return sum(1 for view_flip, _, _ in _ORDER if flip or not view_flip)


def tta_views(count: int, size, *, flip: bool = True) -> list[View]:
    """The first ``count`` views for images of ``size`` (height, width); flips only if ``flip``."""
    limit = max_views(flip=flip)
    if not 1 <= count <= limit:
        why = "" if flip else " (the run trained without flips, so none are used)"
        raise EdgeclsError(f"--tta-count must be between 1 and {limit}{why}, got {count}")
    step = shift_step(*size)
    chosen = [View(f, dy * step, dx * step) for f, dy, dx in _ORDER if flip or not f]
    return chosen[:count]


def apply_view(images: np.ndarray, view: View) -> np.ndarray:
    """``images`` (N, H, W, C) under ``view``; the border uncovered by a shift is reflected."""
    out = images
    if view.flip:
        out = out[:, :, ::-1]
    height, width = images.shape[1:3]
    if view.dy:
        out = np.take(out, _reflected(np.arange(height) - view.dy, height), axis=1)
    if view.dx:
        out = np.take(out, _reflected(np.arange(width) - view.dx, width), axis=2)
    return out


def _reflected(index: np.ndarray, size: int) -> np.ndarray:
    # Mirror without repeating the edge pixel (numpy's "reflect", TensorFlow's REFLECT), the
    # border that training's pad-and-crop and RandomTranslation(fill_mode="reflect") produce.
    index = np.abs(index)
    return np.where(index >= size, 2 * (size - 1) - index, index)


def predict_views(predict, images, views, *, batch_size: int = 64, advance=None) -> tuple[np.ndarray, np.ndarray]:
    """Plain and view-averaged probabilities: ``(probs of views[0], mean over views)``.

    ``predict`` maps a uint8 batch (B, H, W, 3) to probabilities (B, C). Each batch is read once
    (``images`` may be a memory map) and run under every view; ``advance(n)`` is called per model
    call, for a progress bar.
    """
    first, total = [], []
    for start in range(0, len(images), batch_size):
        batch = np.asarray(images[start:start + batch_size])
        outputs = []
        for view in views:
            outputs.append(np.asarray(predict(apply_view(batch, view)), dtype=np.float64))
            if advance is not None:
                advance(1)
        first.append(outputs[0])
        total.append(np.sum(outputs, axis=0))
    if not first:
        raise EdgeclsError("no images to predict")
    # Averaged in float64: with many views the float32 sum would differ in the last bit from
    # the single-view result, and "one view = the plain prediction" must hold exactly.
    return np.concatenate(first).astype(np.float32), (np.concatenate(total) / len(views)).astype(np.float32)


def model_calls(count: int, views: int, batch_size: int = 64) -> int:
    """How many ``predict`` calls ``predict_views`` makes: the total for a progress bar."""
    return -(-count // batch_size) * views
