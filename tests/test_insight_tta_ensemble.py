"""Test-time augmentation views and ensemble averaging, on NumPy arrays (no TensorFlow)."""

import numpy as np
import pytest

from edgecls.errors import EdgeclsError
from edgecls.insight.tta import View, apply_view, max_views, predict_views, shift_step, tta_views
from edgecls.metrics import common_rows, label_orders, mean_probs

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, (5, 12, 10, 3), dtype=np.uint8)


def reference_shift(images, dy, dx):
    """np.pad's "reflect" then a crop: the border a shifted view must show."""
    pad = max(abs(dy), abs(dx))
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    height, width = images.shape[1:3]
    return padded[:, pad - dy:pad - dy + height, pad - dx:pad - dx + width]


@pytest.mark.parametrize("dy, dx", [(0, 2), (0, -2), (3, 0), (-3, 0), (1, -1), (-2, 2)])
def test_shifted_views_match_reflect_padding_and_crop(dy, dx):
    shifted = apply_view(IMAGES, View(dy=dy, dx=dx))
    np.testing.assert_array_equal(shifted, reference_shift(IMAGES, dy, dx))
    # The content moved the way the name says: down/right for positive steps.
    if dy > 0 and dx == 0:
        np.testing.assert_array_equal(shifted[:, dy:], IMAGES[:, :-dy])
    if dx > 0 and dy == 0:
        np.testing.assert_array_equal(shifted[:, :, dx:], IMAGES[:, :, :-dx])


def test_flip_then_shift_and_identity():
    np.testing.assert_array_equal(apply_view(IMAGES, View()), IMAGES)
    np.testing.assert_array_equal(apply_view(IMAGES, View(flip=True)), IMAGES[:, :, ::-1])
    np.testing.assert_array_equal(apply_view(IMAGES, View(flip=True, dx=2)),
                                  reference_shift(IMAGES[:, :, ::-1], 0, 2))


def test_views_are_fixed_distinct_and_respect_flip():
    views = tta_views(max_views(), (32, 32))
    assert len(set(views)) == len(views) == 18
    assert views[0] == View() and views[1] == View(flip=True)
    assert views == tta_views(18, (32, 32)), "the same count gives the same views on every call"
    assert tta_views(8, (32, 32)) == views[:8]
    assert shift_step(32, 32) == 2 and shift_step(224, 300) == 14 and shift_step(8, 8) == 1
    assert {abs(v.dx) for v in views} | {abs(v.dy) for v in views} == {0, 2}
    no_flip = tta_views(max_views(flip=False), (32, 32), flip=False)
    assert len(no_flip) == 9 and not any(v.flip for v in no_flip)
    assert [v.name for v in views[:4]] == ["identity", "flip", "x+2", "x-2"]


@pytest.mark.parametrize("count, flip", [(0, True), (19, True), (10, False)])
def test_impossible_view_counts_are_user_errors(count, flip):
    with pytest.raises(EdgeclsError, match="--tta-count must be between 1 and"):
        tta_views(count, (32, 32), flip=flip)


def left_heavy_predictor(batch):
    """Probabilities that change under a flip or a shift (mean of the left half vs the right half)."""
    batch = np.asarray(batch, dtype=np.float64)
    half = batch.shape[2] // 2
    left, right = batch[:, :, :half].mean(axis=(1, 2, 3)), batch[:, :, half:].mean(axis=(1, 2, 3))
    logits = np.stack([left / 40, right / 40, np.full_like(left, 3.0)], axis=1)
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


def test_one_view_is_exactly_the_plain_prediction():
    plain, averaged = predict_views(left_heavy_predictor, IMAGES, tta_views(1, (12, 10)), batch_size=2)
    np.testing.assert_array_equal(plain, left_heavy_predictor(IMAGES))
    np.testing.assert_array_equal(averaged, plain)


def test_views_are_averaged_batch_by_batch():
    views = tta_views(6, (12, 10))
    calls = []
    plain, averaged = predict_views(left_heavy_predictor, IMAGES, views, batch_size=2, advance=calls.append)
    expected = np.mean([left_heavy_predictor(apply_view(IMAGES, v)) for v in views], axis=0)
    np.testing.assert_allclose(averaged, expected, rtol=1e-6)
    np.testing.assert_array_equal(plain, left_heavy_predictor(IMAGES))
    assert not np.allclose(averaged, plain), "the views must change the prediction for this test to mean anything"
    assert len(calls) == 3 * len(views)  # 5 images in batches of 2, every view


def test_ensemble_is_the_mean_and_reorders_classes():
    a = RNG.dirichlet(np.ones(3), 4).astype(np.float32)
    b = RNG.dirichlet(np.ones(3), 4).astype(np.float32)
    orders = label_orders([["cat", "dog", "fox"], ["fox", "cat", "dog"]], ["A", "B"])
    b_in_own_order = b[:, [2, 0, 1]]  # B lists fox first
    np.testing.assert_allclose(mean_probs([a, b_in_own_order], orders), (a + b) / 2, rtol=1e-6)
    np.testing.assert_allclose(mean_probs([a, b]), (a + b) / 2, rtol=1e-6)


@pytest.mark.parametrize("other, fragment", [
    (["cat", "dog", "owl"], "B lacks fox and adds owl compared with A"),
    (["cat", "dog"], "B lacks fox compared with A"),
    (["cat", "dog", "fox", "owl"], "B adds owl compared with A"),
    (["cat", "dog", "dog"], "B lacks fox compared with A"),
])
def test_different_labels_are_a_one_line_error(other, fragment):
    with pytest.raises(EdgeclsError) as info:
        label_orders([["cat", "dog", "fox"], other], ["A", "B"])
    message = str(info.value)
    assert "\n" not in message and message.startswith("models must share labels: ")
    assert fragment in message


def test_common_rows_keep_only_files_every_member_read():
    rows = common_rows([["x", "y", "z"], ["x", "z"], ["z", "y", "x"]])
    assert [r.tolist() for r in rows] == [[0, 2], [0, 1], [2, 0]]
