"""MediaPipe Tasks' ImageClassifier on images given as a .npy file: run by edgecls.deploy.mediapipe_client.

Usage: python mediapipe_worker.py MODEL.tflite IMAGES.npy SCORES.npy NUM_CLASSES

Imports only numpy and mediapipe, so any Python with ``pip install mediapipe`` runs it (edgecls
need not be installed there). Writes the (n, NUM_CLASSES) scores MediaPipe gives, by category index.
"""

import sys

import numpy as np


def main(model: str, images_file: str, scores_file: str, num_classes: str) -> None:
    import mediapipe as mp
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    images = np.load(images_file, allow_pickle=False)
    classes = int(num_classes)
    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=model), max_results=classes)
    scores = np.zeros((len(images), classes), dtype=np.float32)
    with vision.ImageClassifier.create_from_options(options) as classifier:
        for row, pixels in enumerate(images):
            image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(pixels))
            for category in classifier.classify(image).classifications[0].categories:
                scores[row, category.index] = category.score
    np.save(scores_file, scores)


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__.strip().splitlines()[2])
    main(*sys.argv[1:])
