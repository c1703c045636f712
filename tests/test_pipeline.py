"""The tf.data pipeline: batches, augmentation on the training split only, MixUp, label smoothing inputs."""

import numpy as np

from edgecls.config import AugmentConfig
from edgecls.training.pipeline import make_dataset


def _arrays(count=20, size=16, classes=4):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (count, size, size, 3), dtype=np.uint8), np.arange(count) % classes


def test_evaluation_batches_are_the_images_unchanged_in_order():
    images, labels = _arrays()
    batches = list(make_dataset(images, labels, 4, 8, training=False, augment=AugmentConfig()))
    x = np.concatenate([b[0].numpy() for b in batches])
    y = np.concatenate([b[1].numpy() for b in batches])
    np.testing.assert_array_equal(x, images.astype(np.float32))
    np.testing.assert_array_equal(y.argmax(1), labels)


def test_training_batches_are_shuffled_augmented_and_stay_in_pixel_range():
    images, labels = _arrays()
    ds = make_dataset(images, labels, 4, 8, training=True, augment=AugmentConfig(), seed=1)
    x, y = next(iter(ds))
    assert x.shape == (8, 16, 16, 3) and y.shape == (8, 4)
    x = x.numpy()
    assert x.min() >= 0.0 and x.max() <= 255.0
    assert not any(np.allclose(x[0], img) for img in images.astype(np.float32)), "augmentation changes pixels"
    np.testing.assert_allclose(y.numpy().sum(1), 1.0)


def test_mixup_mixes_labels_exactly_as_it_mixes_images():
    from edgecls.tf import tf
    from edgecls.training.pipeline import BatchAugmenter

    cfg = AugmentConfig(flip=False, rotation=0, zoom=0, translate=0, brightness=0, contrast=0, saturation=0,
                        mixup=1.0)
    values = np.array([10.0, 60.0, 130.0, 220.0], dtype=np.float32)  # image i is flat, of value values[i]
    images = tf.constant(np.broadcast_to(values[:, None, None, None], (4, 8, 8, 3)).copy())
    labels = tf.constant(np.eye(4, dtype=np.float32))  # four classes: every partner differs
    strictly_mixed = 0
    for _ in range(5):
        mixed_images, mixed_labels = BatchAugmenter(cfg)(images, labels)
        mixed_images, mixed_labels = mixed_images.numpy(), mixed_labels.numpy()
        np.testing.assert_allclose(mixed_labels.sum(1), 1.0, rtol=1e-5)
        for i in range(4):
            partner = 3 - i  # the batch is paired with its reverse
            lam = mixed_labels[i, i]
            np.testing.assert_allclose(mixed_labels[i, partner], 1.0 - lam, atol=1e-5)
            expected = lam * values[i] + (1.0 - lam) * values[partner]
            np.testing.assert_allclose(mixed_images[i], expected, rtol=1e-4)
            strictly_mixed += 0.01 < lam < 0.99
    assert strictly_mixed > 0


def test_pad_and_crop_shifts_each_image_by_whole_pixels_and_cutout_blanks_a_square():
    from edgecls.tf import tf
    from edgecls.training.pipeline import BatchAugmenter

    off = dict(flip=False, rotation=0, zoom=0, translate=0, brightness=0, contrast=0, saturation=0)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 8, 8, 3)).astype(np.float32)
    labels = np.zeros((6, 3), np.float32)
    shifted, _ = BatchAugmenter(AugmentConfig(**off, crop_pad=2), seed=1)(tf.constant(images), labels)
    padded = np.pad(images, [(0, 0), (2, 2), (2, 2), (0, 0)], mode="reflect")
    for image, window in zip(shifted.numpy(), padded):
        offsets = [(dy, dx) for dy in range(5) for dx in range(5)
                   if np.array_equal(image, window[dy:dy + 8, dx:dx + 8])]
        assert offsets, "every output must be an 8x8 window of the reflect-padded image"

    blanked, _ = BatchAugmenter(AugmentConfig(**off, cutout=0.5), seed=1)(tf.constant(images), labels)
    changed = (blanked.numpy() != images).any(axis=-1)
    assert np.all(blanked.numpy()[changed] == 127.5)
    for mask in changed:
        rows, cols = np.nonzero(mask)
        if len(rows):  # one axis-aligned square (clipped at the border) of at most 4x4 pixels
            assert rows.max() - rows.min() < 4 and cols.max() - cols.min() < 4
            assert mask[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()


def test_training_and_validation_pipelines_run_without_autotuning():
    # Closing an autotuned iterator sometimes waits for its thread (benchmarks/tfdata_autotune.py);
    # Keras closes one per epoch, so the pipelines keep it off, also after further steps.
    images = np.zeros((12, 8, 8, 3), np.uint8)
    for training in (True, False):
        ds = make_dataset(images, np.arange(12) % 2, 2, 4, training=training, augment=AugmentConfig(flip=True))
        assert ds.options().autotune.enabled is False
        assert ds.repeat().options().autotune.enabled is False
        assert len(list(ds)) == 3


def test_alternate_flips_mirror_each_image_on_every_other_epoch():
    # Images told apart by their labels (one class each); only flips are on, so each batch image
    # is either its source or the source mirrored.
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (16, 8, 8, 3), dtype=np.uint8)
    labels = np.arange(16)
    cfg = AugmentConfig(flip=True, alternate_flips=True, rotation=0, zoom=0, translate=0, brightness=0,
                        contrast=0, saturation=0)
    ds = make_dataset(images, labels, 16, 4, training=True, augment=cfg, seed=5)
    epochs = []
    for _ in range(3):
        mirrored = {}
        for x, y in ds:
            for image, index in zip(x.numpy(), y.numpy().argmax(1)):
                if np.array_equal(image, images[index]):
                    mirrored[int(index)] = False
                else:
                    np.testing.assert_array_equal(image, images[index][:, ::-1].astype(np.float32))
                    mirrored[int(index)] = True
        assert sorted(mirrored) == list(range(16))
        epochs.append(mirrored)
    assert 0 < sum(epochs[0].values()) < 16, "the first epoch's choice is random"
    for before, after in zip(epochs, epochs[1:]):
        assert all(after[i] != before[i] for i in range(16))


def test_alternate_flips_without_flip_is_a_clear_error():
    import pytest

    from edgecls.errors import EdgeclsError
    from edgecls.training.pipeline import check_augment_options

    with pytest.raises(EdgeclsError, match="alternate_flips needs augment.flip"):
        check_augment_options(AugmentConfig(flip=False, alternate_flips=True))
    check_augment_options(AugmentConfig(flip=True, alternate_flips=True))
