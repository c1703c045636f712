"""whitened_cnn's initialisation: the patch whitening computed from data, and the dirac start.

The network (built in ``edgecls.models.architectures``) is the CIFAR-10 speed-run network after
Keller Jordan's airbench, built for int8: a frozen 2×2 convolution that whitens pixel patches
(its filters are the eigenvectors of the training images' patch covariance, scaled to unit
variance, and their negatives, with a ReLU: each direction's positive and negative part), then
three groups of two 3×3 convolutions with a max pool, and a max over the last feature map. Every
convolution after the whitening starts as the identity on its first input channels (dirac), so
the untrained network passes its input through and early training is stable at a high learning rate.

Changed from airbench for deployment: ReLU instead of GELU (int8 kernels and XNNPACK fuse ReLU
into the convolution), and BatchNorm directly after each convolution, before the pool, so the
TFLite converter folds it into the convolution's weights (airbench pools first to save training
compute; BatchNorm's scale is fixed at 1, so it is increasing and pooling commutes with it).
The patch whitening reads raw 0–255 pixels: its bias subtracts the mean patch, so the network
needs no separate normalisation op.
"""

from __future__ import annotations

import numpy as np

WHITEN_LAYER = "whiten"
PATCH = 2
WIDTHS = (64, 256, 256)
# Added to the patch covariance's eigenvalues (pixels scaled to 0–1) before dividing by their
# square root: the directions of least variance are mostly JPEG noise and would be amplified.
WHITEN_EPS = 5e-4
WHITEN_SAMPLE = 5000


def dirac_init(layers) -> None:
    """The first ``in_channels`` filters of each convolution in ``layers`` pass their input channel
    through unchanged; the rest keep Keras' random initialisation."""
    for layer in layers:
        kernel = layer.get_weights()[0]
        k_h, k_w, in_c, out_c = kernel.shape
        shared = min(in_c, out_c)
        kernel[:, :, :, :shared] = 0.0
        kernel[k_h // 2, k_w // 2, np.arange(shared), np.arange(shared)] = 1.0
        layer.set_weights([kernel])


def init_patch_whitening(model, images: np.ndarray, *, seed: int = 0) -> None:
    """Set the frozen whitening convolution from training images (uint8 NHWC, the run's size).

    Uses up to 5,000 images; called once on a freshly built model, before its first step.
    """
    layer = model.get_layer(WHITEN_LAYER)
    count = min(len(images), WHITEN_SAMPLE)
    if count == 0:
        return
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(images), size=count, replace=False))
    sample = np.asarray(images[chosen], dtype=np.float64) / 255.0
    n, height, width, channels = sample.shape
    # Every 2×2 patch as a vector in the (row, column, channel) order of a Keras kernel.
    patches = np.stack([sample[:, dy:height - PATCH + 1 + dy, dx:width - PATCH + 1 + dx, :]
                        for dy in range(PATCH) for dx in range(PATCH)], axis=3)
    patches = patches.reshape(-1, PATCH * PATCH * channels)
    mean = patches.mean(axis=0)
    covariance = np.cov(patches - mean, rowvar=False)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    filters = eigenvectors / np.sqrt(eigenvalues + WHITEN_EPS)  # one whitening direction per column
    filters = np.concatenate([filters, -filters], axis=1)
    kernel = (filters / 255.0).reshape(PATCH, PATCH, channels, -1)  # the layer reads 0–255 pixels
    bias = -(mean @ filters)
    layer.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
