"""Predicting a test set with one or more Keras models, each at its own input size, optionally with TTA."""

from __future__ import annotations

import dataclasses

import numpy as np

from edgecls.insight.sources import ModelSource
from edgecls.insight.tta import View, model_calls, predict_views, tta_views
from edgecls.progress import progress_bar
from edgecls.tf import tf

BATCH_SIZE = 64


@dataclasses.dataclass
class MemberPrediction:
    source: ModelSource
    views: list[View]  # [identity] without TTA
    plain: np.ndarray  # (N, C) probabilities, columns in the ensemble's class order
    tta: np.ndarray | None  # (N, C) mean over ``views``, or None without TTA


def input_size(model) -> tuple[int, int]:
    return int(model.input_shape[1]), int(model.input_shape[2])


def flips_allowed(source: ModelSource) -> bool:
    """A run trained without flips (digits, text) must not be judged on mirrored images."""
    return source.config.augment.flip if source.config is not None else True


def keras_predictor(model):
    """uint8 batch → probabilities, through one traced function (eager calls cost more per batch)."""
    call = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    return lambda batch: call(tf.convert_to_tensor(np.asarray(batch, dtype=np.float32))).numpy()


def predict_members(models, sources, images, orders, *, tta_count: int = 0, verbose: int = 1) -> list[MemberPrediction]:
    """Each model on its own ``images`` (the same files at its input size); one progress bar for all."""
    views = [tta_views(tta_count, input_size(model), flip=flips_allowed(source)) if tta_count else [View()]
             for model, source in zip(models, sources)]
    total = sum(model_calls(len(member_images), len(member_views), BATCH_SIZE)
                for member_images, member_views in zip(images, views))
    what = f"predicting with {len(models)} models" if len(models) > 1 else "predicting"
    results = []
    with progress_bar(what + (f", {tta_count} views each" if tta_count else ""), total,
                      enabled=bool(verbose)) as advance:
        for model, source, member_images, member_views, order in zip(models, sources, images, views, orders):
            plain, averaged = predict_views(keras_predictor(model), member_images, member_views,
                                            batch_size=BATCH_SIZE, advance=advance)
            results.append(MemberPrediction(source, member_views, plain[:, order],
                                            averaged[:, order] if tta_count else None))
    return results
