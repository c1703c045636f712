"""Learning-rate schedules that are saved inside the model file, so a resumed run continues them."""

from __future__ import annotations

import math

from edgecls.config import SGD_MOMENTUM
from edgecls.errors import EdgeclsError
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


def head_epochs(train_config) -> int:
    """Epochs of a pretrained run's first phase (frozen base): ``head_epochs``, or a third of all."""
    t = train_config
    head = t.head_epochs if t.head_epochs is not None else max(1, round(t.epochs / 3))
    return min(max(1, head), t.epochs)


def current_lr(optimizer) -> float:
    lr = optimizer.learning_rate
    if isinstance(lr, keras.optimizers.schedules.LearningRateSchedule):
        lr = lr(optimizer.iterations)
    return float(keras.backend.get_value(lr))


@keras.utils.register_keras_serializable(package="edgecls")
class BiasScaledSGD(keras.optimizers.SGD):
    """Nesterov SGD whose BatchNorm offsets take ``bias_lr_scale`` times larger steps.

    With BatchNorm after every convolution the kernels are scale-invariant and follow the
    learning rate and weight decay, while the offsets set the activations' thresholds and learn
    slowly at the same rate; airbench steps them 64 times faster. Only BatchNorm offsets, as
    airbench: a classifier's bias stepping 64 times faster swings every logit at once. Weight
    decay stays per step as for the kernels (Keras applies it apart from the gradient).
    """

    def __init__(self, learning_rate=0.01, bias_lr_scale=1.0, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.bias_lr_scale = float(bias_lr_scale)

    def update_step(self, gradient, variable):
        if self.bias_lr_scale != 1.0 and _is_offset(variable):
            gradient = gradient * tf.cast(self.bias_lr_scale, gradient.dtype)
        super().update_step(gradient, variable)

    def get_config(self):
        return {**super().get_config(), "bias_lr_scale": self.bias_lr_scale}


def _is_offset(variable) -> bool:
    return variable.name.rsplit("/", 1)[-1].split(":")[0] == "beta"


def check_optimizer_options(optimizer: str, bias_lr_scale: float, momentum: float = SGD_MOMENTUM) -> None:
    """A recipe's ``bias_lr_scale`` must be positive, and other than 1 only with sgd; ``momentum`` in
    [0, 1), and other than the default only with sgd (Adam's moments are not set from a recipe)."""
    if bias_lr_scale <= 0 or (bias_lr_scale != 1.0 and optimizer.lower() != "sgd"):
        raise EdgeclsError(f"train.bias_lr_scale must be positive and needs the sgd optimizer, got {bias_lr_scale:g} "
                           f"with {optimizer}")
    if not 0.0 <= momentum < 1.0 or (momentum != SGD_MOMENTUM and optimizer.lower() != "sgd"):
        raise EdgeclsError(f"train.momentum must be at least 0 and below 1 and needs the sgd optimizer, "
                           f"got {momentum:g} with {optimizer}")


def make_optimizer(name: str, learning_rate, weight_decay: float, bias_lr_scale: float = 1.0,
                   momentum: float = SGD_MOMENTUM):
    """The Keras optimizer a recipe names (adam, adamw or sgd) at ``learning_rate`` (a value or a schedule).

    ``bias_lr_scale`` (sgd only) makes BatchNorm offsets step that many times faster; ``momentum``
    is sgd's (Nesterov).
    """
    name = name.lower()
    check_optimizer_options(name, bias_lr_scale, momentum)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate)
    if name == "adamw":
        return keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay)
    if name == "sgd":
        sgd = {"momentum": momentum, "nesterov": True, "weight_decay": weight_decay or None}
        if bias_lr_scale != 1.0:
            return BiasScaledSGD(learning_rate, bias_lr_scale=bias_lr_scale, **sgd)
        return keras.optimizers.SGD(learning_rate, **sgd)
    raise EdgeclsError(f"unknown optimizer '{name}'; choose adam, adamw or sgd")
