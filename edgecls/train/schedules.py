"""Learning-rate schedules that are saved inside the model file, so a resumed run continues them."""

from __future__ import annotations

import math

from edgecls.tf import keras, tf


@keras.utils.register_keras_serializable(package="edgecls")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to ``peak_lr``, then cosine decay to ``final_fraction * peak_lr``.

    Driven by the optimizer's own step counter, which is restored with the optimizer state, so
    ``--resume`` picks the schedule up exactly where the interrupted run left it.
    """

    def __init__(self, peak_lr, total_steps, warmup_steps=0, final_fraction=0.01, name=None):
        super().__init__()
        self.peak_lr = float(peak_lr)
        self.total_steps = int(max(1, total_steps))
        self.warmup_steps = int(min(max(0, warmup_steps), self.total_steps - 1))
        self.final_fraction = float(final_fraction)
        self.name = name

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warmup = float(max(1, self.warmup_steps))
        warm_lr = self.peak_lr * (step + 1.0) / warmup
        decay_steps = float(max(1, self.total_steps - self.warmup_steps))
        progress = tf.clip_by_value((step - self.warmup_steps) / decay_steps, 0.0, 1.0)
        cosine = 0.5 * (1.0 + tf.cos(math.pi * progress))
        floor = self.final_fraction
        decayed = self.peak_lr * (floor + (1.0 - floor) * cosine)
        if self.warmup_steps == 0:
            return decayed
        return tf.where(step < self.warmup_steps, warm_lr, decayed)

    def get_config(self):
        return {
            "peak_lr": self.peak_lr,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "final_fraction": self.final_fraction,
            "name": self.name,
        }


def current_lr(optimizer) -> float:
    lr = optimizer.learning_rate
    if isinstance(lr, keras.optimizers.schedules.LearningRateSchedule):
        lr = lr(optimizer.iterations)
    return float(keras.backend.get_value(lr))


def make_optimizer(name: str, learning_rate, weight_decay: float):
    """The Keras optimizer a recipe names (adam, adamw or sgd) at ``learning_rate`` (a value or a schedule)."""
    name = name.lower()
    if name == "adam":
        return keras.optimizers.Adam(learning_rate)
    if name == "adamw":
        return keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=0.9, nesterov=True, weight_decay=weight_decay or None)
    from edgecls.errors import EdgeclsError

    raise EdgeclsError(f"unknown optimizer '{name}'; choose adam, adamw or sgd")
