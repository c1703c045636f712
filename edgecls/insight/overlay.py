"""Drawing a Grad-CAM heatmap over its image: NumPy blending and one matplotlib figure per image."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from PIL import Image

from edgecls.training.evaluation_reports import save_figure

# Small images (CIFAR's 32 px) are scaled up so the heatmap's gradations are visible; photos are
# scaled down so a folder of them does not produce megabytes of PNG each.
DISPLAY_MIN_SIDE = 256
DISPLAY_MAX_SIDE = 512
ALPHA = 0.45


def display_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) with the longer side within DISPLAY_MIN_SIDE..DISPLAY_MAX_SIDE, aspect kept."""
    longer = max(width, height)
    scale = min(max(longer, DISPLAY_MIN_SIDE), DISPLAY_MAX_SIDE) / longer
    return max(1, round(width * scale)), max(1, round(height * scale))


def upsample(heatmap: np.ndarray, width: int, height: int) -> np.ndarray:
    """A (h, w) heatmap stretched over the whole image (the model saw it squashed, uncropped)."""
    img = Image.fromarray(np.asarray(heatmap, dtype=np.float32), mode="F")
    return np.asarray(img.resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32)


def blend(image: np.ndarray, heatmap: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """``image`` (H, W, 3) uint8 with the jet-coloured ``heatmap`` (H, W, values 0..1) laid over it."""
    colours = colormaps["jet"](np.clip(heatmap, 0.0, 1.0))[..., :3] * 255.0
    mixed = (1.0 - alpha) * image.astype(np.float32) + alpha * colours
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def render_gradcam(picture: Image.Image, heatmap: np.ndarray, title: str, path: str | os.PathLike) -> Path:
    """Two panels, the image and the image under its heatmap, titled with the prediction."""
    width, height = display_size(*picture.size)
    shown = np.asarray(picture.convert("RGB").resize((width, height), Image.Resampling.BILINEAR))
    warm = upsample(heatmap, width, height)
    aspect = width / height
    fig = Figure(figsize=(2 * 3.2 * aspect + 0.6, 3.6), layout="constrained")
    left, right = fig.subplots(1, 2)
    left.imshow(shown)
    right.imshow(blend(shown, warm))
    # The colour bar reads the heatmap's scale, not the blended pixels'.
    fig.colorbar(ScalarMappable(Normalize(0.0, 1.0), "jet"), ax=right, shrink=0.8, label="Grad-CAM (relative)")
    for ax in (left, right):
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path, dpi=100)
