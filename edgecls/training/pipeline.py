"""tf.data input pipelines over decoded uint8 image arrays.

Images are decoded and resized once (``edgecls.data.decode``) into a uint8 array that lives in
memory when it fits and is memory-mapped from the cache otherwise; batches are gathered from it,
so no JPEG is decoded twice and the pipeline keeps up with training.
"""

from __future__ import annotations

import os

import numpy as np
import psutil

from edgecls.config import AugmentConfig
from edgecls.errors import EdgeclsError
from edgecls.tf import keras, tf

# Arrays larger than this share of the available memory stay memory-mapped from disk.
IN_MEMORY_SHARE = 0.25
# Fixed parallelism rather than tf.data's autotuning: its background thread wakes on a period that
# doubles from 10 ms up to a minute, and closing an iterator sometimes waits for the next wake-up.
# Keras closes one per epoch and per validation, so a run paid for it again and again, at random
# (benchmarks/tfdata_autotune.py measures both). Two maps over in-memory batches need no tuning;
# more than a few batches in flight would only hold memory (at 224 px, ~19 MB per batch of 32).
PARALLEL_CALLS = max(1, min(4, os.cpu_count() or 1))
PREFETCH_BATCHES = 2


def without_autotune(dataset):
    """``dataset`` with tf.data's autotuning thread off (see PARALLEL_CALLS)."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


def maybe_in_memory(images: np.ndarray) -> np.ndarray:
    if images.nbytes <= IN_MEMORY_SHARE * psutil.virtual_memory().available:
        return np.ascontiguousarray(images)
    return images


def check_augment_options(augment: AugmentConfig) -> None:
    """``alternate_flips`` says how images are flipped, so it needs ``flip``."""
    if augment.alternate_flips and not augment.flip:
        raise EdgeclsError("augment.alternate_flips needs augment.flip: true")


def make_dataset(images, labels, num_classes: int, batch_size: int, *, training: bool,
                 augment: AugmentConfig | None = None, seed: int = 0):
    """Batches of (float32 RGB 0–255, one-hot float32 labels)."""
    images = maybe_in_memory(images)
    labels = np.asarray(labels, dtype=np.int32)
    count = len(labels)
    height, width = images.shape[1:3]
    alternate = training and augment is not None and augment.flip and augment.alternate_flips
    # Whether each image is mirrored the next time it is read; flipped after every read. Kept here
    # rather than derived from the epoch number, which tf.data does not see; a resumed run starts
    # from a fresh random choice, which costs nothing but the alternation of one epoch.
    mirror_next = np.random.default_rng(seed).random(count) < 0.5 if alternate else None

    def gather(index):
        index = np.sort(index)  # sorted reads are sequential on a memory-mapped file
        x, y = images[index], labels[index]  # copies: fancy indexing
        if mirror_next is not None:
            mirrored = mirror_next[index]
            x[mirrored] = x[mirrored, :, ::-1]
            mirror_next[index] = ~mirrored
        return x, y

    def load(index):
        # stateful=False also with alternating flips: their state changes only how an image is
        # mirrored, never which images a read returns.
        x, y = tf.numpy_function(gather, [index], [tf.uint8, tf.int32], stateful=False)
        x.set_shape([None, height, width, 3])
        y.set_shape([None])
        return tf.cast(x, tf.float32), tf.one_hot(y, num_classes)

    ds = tf.data.Dataset.range(count)
    if training:
        ds = ds.shuffle(count, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=training and count >= batch_size)
    ds = ds.map(load, num_parallel_calls=PARALLEL_CALLS)
    if training and augment is not None:
        augmenter = BatchAugmenter(augment, seed)
        ds = ds.map(augmenter, num_parallel_calls=PARALLEL_CALLS)
    return without_autotune(ds.prefetch(PREFETCH_BATCHES))


class BatchAugmenter:
    """Random flips, rotation, zoom, translation and colour jitter per image; then MixUp per batch."""

    def __init__(self, cfg: AugmentConfig, seed: int = 0):
        self.cfg = cfg
        # float32 whatever the global policy: under mixed precision the model casts on entry, and
        # the input pipeline keeps full-precision pixels.
        common = {"seed": seed, "dtype": "float32"}
        geometric = []
        if cfg.flip and not cfg.alternate_flips:  # alternating flips happen as images are read
            geometric.append(keras.layers.RandomFlip("horizontal", **common))
        if cfg.rotation > 0:
            geometric.append(keras.layers.RandomRotation(cfg.rotation, fill_mode="reflect", **common))
        if cfg.zoom > 0:
            geometric.append(keras.layers.RandomZoom((-cfg.zoom, cfg.zoom), fill_mode="reflect", **common))
        if cfg.translate > 0:
            geometric.append(keras.layers.RandomTranslation(cfg.translate, cfg.translate, fill_mode="reflect",
                                                            **common))
        self.geometric = geometric

    def __call__(self, images, labels):
        if self.cfg.crop_pad > 0:
            images = self._pad_and_crop(images, self.cfg.crop_pad)
        for layer in self.geometric:
            images = layer(images, training=True)
        images = self._colour(images)
        if self.cfg.cutout > 0:
            images = self._cutout(images, self.cfg.cutout)
        if self.cfg.mixup > 0:
            images, labels = self._mixup(images, labels)
        return images, labels

    def _pad_and_crop(self, images, pad):
        # Gathers rows and columns at a random offset per image: a shift by whole pixels, far
        # cheaper on a CPU than the interpolating affine transform of RandomTranslation.
        shape = tf.shape(images)
        batch, height, width = shape[0], shape[1], shape[2]
        padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
        dy = tf.random.uniform([batch, 1], 0, 2 * pad + 1, dtype=tf.int32)
        dx = tf.random.uniform([batch, 1], 0, 2 * pad + 1, dtype=tf.int32)
        rows = dy + tf.range(height)[tf.newaxis, :]
        cols = dx + tf.range(width)[tf.newaxis, :]
        images = tf.gather(padded, rows, axis=1, batch_dims=1)
        return tf.gather(images, cols, axis=2, batch_dims=1)

    def _cutout(self, images, fraction):
        shape = tf.shape(images)
        batch, height, width = shape[0], shape[1], shape[2]
        half_h = tf.cast(tf.round(fraction * tf.cast(height, tf.float32) / 2.0), tf.int32)
        half_w = tf.cast(tf.round(fraction * tf.cast(width, tf.float32) / 2.0), tf.int32)
        # Centres anywhere in the image, so a square may be partly outside it, as in Cutout.
        cy = tf.random.uniform([batch, 1, 1], 0, height, dtype=tf.int32)
        cx = tf.random.uniform([batch, 1, 1], 0, width, dtype=tf.int32)
        ys = tf.range(height)[tf.newaxis, :, tf.newaxis]
        xs = tf.range(width)[tf.newaxis, tf.newaxis, :]
        inside = (tf.abs(ys - cy) < half_h) & (tf.abs(xs - cx) < half_w)
        # Blanked to mid-grey: the value the network's inputs centre on.
        return tf.where(inside[..., tf.newaxis], 127.5, images)

    def _per_image(self, images, spread):
        batch = tf.shape(images)[0]
        return tf.random.uniform([batch, 1, 1, 1], -spread, spread)

    def _colour(self, images):
        cfg = self.cfg
        if cfg.brightness > 0:
            images = images + 255.0 * self._per_image(images, cfg.brightness)
        if cfg.contrast > 0:
            mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
            images = (images - mean) * (1.0 + self._per_image(images, cfg.contrast)) + mean
        if cfg.saturation > 0:
            grey = tf.reduce_mean(images, axis=-1, keepdims=True)
            images = (images - grey) * (1.0 + self._per_image(images, cfg.saturation)) + grey
        return tf.clip_by_value(images, 0.0, 255.0)

    def _mixup(self, images, labels):
        batch = tf.shape(images)[0]
        alpha = self.cfg.mixup
        # Beta(a, a) from two Gamma(a) draws; tf has no Beta sampler of its own.
        g1 = tf.random.gamma([batch], alpha)
        g2 = tf.random.gamma([batch], alpha)
        lam = g1 / (g1 + g2)
        partner = tf.reverse(tf.range(batch), axis=[0])
        lam_x = tf.reshape(lam, [-1, 1, 1, 1])
        lam_y = tf.reshape(lam, [-1, 1])
        mixed_images = lam_x * images + (1.0 - lam_x) * tf.gather(images, partner)
        mixed_labels = lam_y * labels + (1.0 - lam_y) * tf.gather(labels, partner)
        return mixed_images, mixed_labels


def steps_per_epoch(count: int, batch_size: int) -> int:
    return max(1, count // batch_size) if count >= batch_size else 1


def predict_probs(model, images, batch_size: int = 64) -> np.ndarray:
    """Class probabilities for a uint8 image array, batch by batch (bounded memory)."""
    outputs = []
    for start in range(0, len(images), batch_size):
        batch = np.asarray(images[start:start + batch_size], dtype=np.float32)
        outputs.append(model(batch, training=False).numpy())
    if not outputs:
        return np.zeros((0, model.output_shape[-1]), dtype=np.float32)
    return np.concatenate(outputs).astype(np.float32)
