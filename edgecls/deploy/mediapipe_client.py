"""MediaPipe Tasks' ImageClassifier as a client of an edgecls .tflite: what an app would get on the same pixels.

``bench --parity`` compares it with edgecls' own runtimes. Images are handed over as decoded RGB
arrays already at the model's size, so MediaPipe resizes nothing and both see the same pixels.
MediaPipe reports a score per category index: probabilities for a float model ending in softmax,
logits for an int8 one (edgecls.converters.tflite_metadata), which are turned into probabilities
here as edgecls' runtimes do, so |Δ probability| compares like with like.
"""

from __future__ import annotations

import numpy as np


def available() -> bool:
    """Whether MediaPipe is installed (``pip install mediapipe``), found without importing it: importing it
    imports TensorFlow where that is installed too."""
    import importlib.util

    return importlib.util.find_spec("mediapipe") is not None


def probabilities(model_path, images: np.ndarray, num_classes: int, *, logits: bool) -> np.ndarray:
    """(n, num_classes) probabilities MediaPipe's ImageClassifier gives for uint8 RGB ``images`` (n, h, w, 3)."""
    import mediapipe as mp
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(model_path)),
                                            max_results=num_classes)
    scores = np.zeros((len(images), num_classes), dtype=np.float64)
    with vision.ImageClassifier.create_from_options(options) as classifier:
        for row, pixels in enumerate(images):
            image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(pixels, dtype=np.uint8))
            for category in classifier.classify(image).classifications[0].categories:
                scores[row, category.index] = category.score
    if logits:
        scores = np.exp(scores - scores.max(axis=1, keepdims=True))
        scores /= scores.sum(axis=1, keepdims=True)
    return scores
