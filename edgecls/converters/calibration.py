"""Calibration inputs shared by the TFLite and ONNX int8 paths (no TensorFlow needed)."""

from __future__ import annotations

import numpy as np

# Training images the int8 converters calibrate on, unless told otherwise (quantize, export, optimize).
DEFAULT_CALIBRATION = 300


def pinned_calibration_inputs(images):
    """float32 (1, H, W, C) batches, the first with one pixel at 0 and one at 255.

    Converters set the input tensor's quantization from the values they see; pinning the range to
    exactly 0–255 gives uint8 input scale 1 and zero point 0, so devices feed raw pixels.
    """
    first = np.array(images[0], dtype=np.float32, copy=True)
    first.flat[0], first.flat[1] = 0.0, 255.0
    yield first[None]
    for image in images[1:]:
        yield np.asarray(image, dtype=np.float32)[None]
