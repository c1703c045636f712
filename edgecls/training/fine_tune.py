"""The one fine-tuning loop: training's phases, quantization-aware training and pruning all fit through it.

Compression sits on top of the float recipe (TF Model Garden's habit), so the optimizer is a
choice: ``"recipe"`` is the run's own optimizer as ``make_optimizer`` builds it (SGD with Nesterov
momentum, weight decay, bias-lr scaling, ...) at a lower rate, ``"adam"`` is plain Adam, what QAT
and pruning used before the two were compared. Training's own phases always use the recipe.
"""

from __future__ import annotations

import dataclasses

from edgecls.errors import EdgeclsError

# TensorFlow is imported inside the functions: the CLI and the API read OPTIMIZERS and
# DEFAULT_OPTIMIZER for their defaults and help without loading it.

OPTIMIZERS = ("adam", "recipe")
# Chosen by benchmarks/cifar10_variants.py --optimizers adam recipe on validation: on
# mobilenet_v3_small (2026-12-07) Adam's QAT and pruned variants averaged 79.38 % against the
# recipe's SGD 78.91 % (benchmarks/results/cifar10_variants.md).
DEFAULT_OPTIMIZER = "adam"
ADAM_LR = 1e-4
# The recipe's optimizer continues where the float training ended: the last phase's peak rate
# times the cosine's floor (WarmupCosine's final_fraction), e.g. SGD at 0.1 -> 1e-3.
RECIPE_LR_FRACTION = 0.01


def check_optimizer(name: str) -> str:
    choice = str(name).strip().lower()
    if choice not in OPTIMIZERS:
        raise EdgeclsError(f"unknown fine-tuning optimizer '{name}' (--fine-tune-optimizer); choose "
                           f"{' or '.join(OPTIMIZERS)}")
    return choice


def default_lr(optimizer: str, config) -> float:
    """The fine-tuning rate when none is given: Adam's 1e-4, or where the recipe's schedule ended."""
    from edgecls.training.schedules import head_epochs

    if check_optimizer(optimizer) == "adam":
        return ADAM_LR
    t = config.train
    pretrained = config.model.weights not in (None, "none")  # config.yaml holds training's resolved choice
    last_phase_lr = t.fine_tune_lr if pretrained and t.epochs > 1 and head_epochs(t) < t.epochs else t.lr
    return last_phase_lr * RECIPE_LR_FRACTION


def make_fine_tune_optimizer(optimizer: str, train_config, learning_rate):
    """Adam, or the recipe's optimizer (``train_config``: the run's TrainConfig), at ``learning_rate``."""
    from edgecls.tf import keras
    from edgecls.training.schedules import make_optimizer

    if check_optimizer(optimizer) == "adam":
        return keras.optimizers.Adam(learning_rate)
    t = train_config
    return make_optimizer(t.optimizer, learning_rate, t.weight_decay, t.bias_lr_scale, t.momentum)


def compile_for_fine_tuning(model, train_config, *, optimizer: str, learning_rate, from_logits: bool = False):
    """Compile with the chosen optimizer and the recipe's cross-entropy (its label smoothing).

    Weighted metrics, so the zero-weight images that pad validation to full batches under a
    strategy do not count; without sample weights they are the plain accuracy.
    """
    from edgecls.tf import keras

    model.compile(
        optimizer=make_fine_tune_optimizer(optimizer, train_config, learning_rate),
        loss=keras.losses.CategoricalCrossentropy(from_logits=from_logits,
                                                  label_smoothing=train_config.label_smoothing),
        weighted_metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )
    return model


@dataclasses.dataclass
class FineTuned:
    history: dict  # Keras' History.history: per-epoch logs of this fit
    kept_epoch: int  # with keep_best: the epoch whose weights the model holds (0 = the start)
    val_accuracy_by_epoch: list[float]  # with keep_best the start comes first

    def record(self, model, optimizer: str, lr: float) -> dict:
        """What a sidecar keeps of this fine-tuning: the optimizer chosen, the Keras class it made, the
        (peak) rate, the epoch kept and the validation top-1 by epoch."""
        return {"optimizer": optimizer, "optimizer_class": type(model.optimizer).__name__, "lr": float(lr),
                "kept_epoch": self.kept_epoch,
                "val_accuracy_by_epoch": [round(a, 6) for a in self.val_accuracy_by_epoch]}


def fine_tune(model, train, *, epochs: int, val=None, initial_epoch: int = 0, callbacks=(),
              tensorboard_dir=None, tensorboard: bool = False, keep_best: bool = False,
              verbose: int = 1) -> FineTuned:
    """Fit a compiled ``model`` for epochs ``initial_epoch + 1 .. epochs``: progress bar, the caller's
    callbacks, TensorBoard scalars into ``tensorboard_dir`` and, with ``keep_best`` and a validation
    set, the weights of the best epoch on validation (the start counting as epoch 0)."""
    from edgecls.training.callbacks import KeepBestOnValidation, epoch_progress, tensorboard_callbacks

    keeper = []
    if keep_best and val is not None:
        start = model.evaluate(val, verbose=0, return_dict=True)["accuracy"]
        keeper = [KeepBestOnValidation(start)]
    board = tensorboard_callbacks(tensorboard_dir, tensorboard) if tensorboard_dir is not None else []
    with epoch_progress(bool(verbose)) as progress:
        history = model.fit(train, validation_data=val, epochs=epochs, initial_epoch=initial_epoch,
                            callbacks=[*progress, *callbacks, *board, *keeper], verbose=0)
    logs = dict(getattr(history, "history", {}) or {})
    if keeper:
        return FineTuned(logs, keeper[0].kept_epoch, keeper[0].history)
    return FineTuned(logs, epochs, [float(a) for a in logs.get("val_accuracy", [])])
