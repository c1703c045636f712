"""Quantization-aware training with tensorflow-model-optimization, for every registered architecture.

tfmot's default registry knows Keras' built-in layers. edgecls' own single-op layers (and the
preprocessing layers that normalise inside the graph) get a QuantizeConfig that fake-quantizes
their output, so every tensor of the converted graph has a trained range and the TFLite model is
integer from input to logits. A layer that tfmot cannot quantize is named in a one-line error.
"""

from __future__ import annotations

import re

from edgecls.tf import keras  # first: sets TF_USE_LEGACY_KERAS before tfmot imports TensorFlow  # isort: skip
import tensorflow_model_optimization as tfmot  # noqa: E402  # isort: skip


from edgecls.converters.graph_rewrite import split_fused_activations
from edgecls.converters.tflite_convert import pin_input_range
from edgecls.errors import EdgeclsError, first_line
from edgecls.metrics import top1_accuracy
from edgecls.models.layers import ChannelShift
from edgecls.models.mobilenet_v3 import ShiftedReLU6
from edgecls.training.fine_tune import (
    DEFAULT_OPTIMIZER,
    check_optimizer,
    compile_for_fine_tuning,
    default_lr,
    fine_tune,
)

quantize = tfmot.quantization.keras
MovingAverageQuantizer = quantize.quantizers.MovingAverageQuantizer


class OutputQuantizeConfig(quantize.QuantizeConfig):
    """No weights to quantize; the output gets an 8-bit asymmetric range learned during QAT."""

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return [MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False, narrow_range=False)]

    def get_config(self):
        return {}


OUTPUT_QUANTIZED = (ShiftedReLU6, ChannelShift, keras.layers.Rescaling, keras.layers.Normalization,
                    keras.layers.Multiply)


def scope():
    return quantize.quantize_scope({
        "OutputQuantizeConfig": OutputQuantizeConfig,
        "ShiftedReLU6": ShiftedReLU6,
        "ChannelShift": ChannelShift,
    })


def quantize_aware_model(model, *, preserve_sparsity: bool = False):
    """Wrap ``model`` (weights kept) for quantization-aware training.

    ``preserve_sparsity``: tfmot's prune-preserving scheme, which masks the weight updates so the
    zeros of a pruned model survive fine-tuning (plain QAT would fill them in again).
    """

    def annotate(layer):
        if isinstance(layer, keras.layers.InputLayer):
            return layer
        if isinstance(layer, OUTPUT_QUANTIZED):
            return quantize.quantize_annotate_layer(layer, OutputQuantizeConfig())
        return quantize.quantize_annotate_layer(layer)

    annotated = keras.models.clone_model(split_fused_activations(model), clone_function=annotate)
    with scope():
        try:
            if preserve_sparsity:
                scheme = tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme()
                return quantize.quantize_apply(annotated, scheme)
            return quantize.quantize_apply(annotated)
        except (RuntimeError, ValueError, TypeError) as err:
            raise EdgeclsError(f"quantization-aware training is not possible: {_unsupported(err, model)}") from None


def _unsupported(err: Exception, model) -> str:
    text = str(err)
    # tfmot says "Layer <name>:<class '...Multiply'> is not supported. ..."
    match = re.search(r"Layer (\S+?):<class '([\w.]+)'> is not supported", text)
    if match:
        return f"layer '{match.group(1)}' ({match.group(2).rsplit('.', 1)[-1]}) is not supported by tfmot"
    # A custom layer tfmot cannot even clone: "... [Layer Mystery supplied to wrapper is not ..."
    match = re.search(r"Layer (\w+) supplied to wrapper", text)
    if match:
        names = [layer.name for layer in model.layers if type(layer).__name__ == match.group(1)]
        shown = ", ".join(f"'{n}'" for n in names) or match.group(1)
        return (f"layer {shown} ({match.group(1)}) is a custom layer tfmot cannot quantize; give it a "
                "QuantizeConfig or build it from Keras layers")
    return first_line(err)


CALIBRATION_IMAGES = 300  # as post-training int8 calibrates


def output_ranges(model, names, images, batch: int = 32) -> dict[str, tuple[float, float]]:
    """Min and max of the named layers' outputs over ``images``: the ranges PTQ calibrates."""
    import numpy as np

    probe = keras.Model(model.input, [model.get_layer(name).output for name in names])
    low = dict.fromkeys(names, np.inf)
    high = dict.fromkeys(names, -np.inf)
    for start in range(0, len(images), batch):
        outputs = probe(np.asarray(images[start:start + batch], dtype=np.float32), training=False)
        if len(names) == 1:
            outputs = [outputs]
        for name, value in zip(names, outputs, strict=True):
            value = value.numpy()
            low[name] = min(low[name], float(value.min()))
            high[name] = max(high[name], float(value.max()))
    return {name: (low[name], high[name]) for name in names}


def initialise_ranges(qat_model, float_graph, images) -> int:
    """Start every fake-quant range where post-training calibration would put it; returns how many.

    tfmot starts activation and weight ranges at [-6, 6] until the first training step, then
    moves activation ranges by a moving average (decay 0.999): a short QAT run keeps much of the
    arbitrary start and scores far below the PTQ model it began as. Here weight ranges are set
    from the weights themselves (tfmot's own rule, applied once) and activation ranges from the
    float model's outputs on calibration images, so the QAT model before its first step already
    computes what the PTQ model computes. ``float_graph``: the annotated float model (same names).
    """
    wrappers = [layer for layer in qat_model.layers if hasattr(layer, "layer") and hasattr(layer, "quantize_config")]
    known = {layer.name for layer in float_graph.layers}
    names = [w.layer.name for w in wrappers if _range_weights(w) and w.layer.name in known]
    ranges = output_ranges(float_graph, names, images) if names else {}
    count = 0
    pin_input_range(qat_model)  # the input quantizer: pixels 0-255
    for wrapper in wrappers:
        # tfmot keeps the weight quantizers in a private list; calling one in training mode is
        # what its first training step does: it sets the range from the current weights.
        for weight, quantizer, variables in getattr(wrapper, "_weight_vars", []):
            quantizer(weight, training=True, weights=variables)
            count += 1
        low_high = ranges.get(wrapper.layer.name)
        if low_high is None:
            continue
        low, high = min(low_high[0], 0.0), max(low_high[1], 0.0)
        for weight in _range_weights(wrapper):
            weight.assign(low if weight.name.endswith("_min:0") else high)
            count += 1
    return count


def _range_weights(wrapper) -> list:
    # The ranges of the layer's output: its "output" quantizer or its activation's "post_activation".
    return [w for w in wrapper.weights
            if w.name.endswith(("output_min:0", "output_max:0", "post_activation_min:0", "post_activation_max:0"))]


def freeze_batch_norm(qat_model) -> int:
    """Keep BatchNorm statistics fixed during QAT (a trainable tf_keras BN uses batch statistics).

    Fine-tuning at a small learning rate with batch statistics moves every BN layer away from
    the statistics the model was trained and calibrated with; training's own fine-tuning phase
    keeps BN frozen too.
    """
    count = 0
    for layer in qat_model.layers:
        inner = getattr(layer, "layer", layer)
        if isinstance(inner, keras.layers.BatchNormalization):
            inner.trainable = False
            count += 1
    return count


def train_quantization_aware(ctx, *, epochs: int, lr: float | None, batch_size: int | None,
                             optimizer: str = DEFAULT_OPTIMIZER, preserve_sparsity: bool = False, calibration=None,
                             verbose: int = 1):
    """Fine-tune the run's model with fake quantization; returns (QAT model, its test top-1, selection).

    ``optimizer``: ``"adam"`` or ``"recipe"`` (the run's own, see edgecls.training.fine_tune) at
    ``lr`` (None: that choice's default), cosine-decayed over the epochs. Ranges start from
    ``calibration`` images (default: the training images PTQ calibrates on). With a validation
    split, the weights kept are those of the epoch (0 = the calibrated start) that scored best on
    it; ``selection`` says which (``kept_epoch``, ``val_accuracy_by_epoch``) and with what
    (``optimizer``, ``optimizer_class``, ``lr``).
    """
    import numpy as np

    from edgecls.converters.tflite_convert import int8_graph
    from edgecls.training.pipeline import make_dataset, steps_per_epoch
    from edgecls.training.schedules import WarmupCosine

    config = ctx.config
    optimizer = check_optimizer(optimizer)
    lr = default_lr(optimizer, config) if lr is None else lr
    batch = batch_size or config.train.batch_size
    classes = len(ctx.labels)
    # A copy: tfmot's wrappers keep the layers they wrap and set their kernels to fake-quantized
    # tensors, which would leak into the run's model (and every later conversion of it).
    copy = keras.models.clone_model(ctx.model)
    copy.set_weights(ctx.model.get_weights())
    # Trained on the graph tflite_convert.convert would convert, so QAT's int8 is as fast as PTQ's
    float_graph = int8_graph(copy)
    qat_model = quantize_aware_model(float_graph, preserve_sparsity=preserve_sparsity)
    images = ctx.calibration_images(CALIBRATION_IMAGES) if calibration is None else calibration
    initialise_ranges(qat_model, split_fused_activations(float_graph), images)
    freeze_batch_norm(qat_model)
    train = make_dataset(ctx.data.train.images, ctx.data.train.labels, classes, batch, training=True,
                         augment=config.augment, seed=config.train.seed)
    val = None
    if len(ctx.data.val.labels):
        val = make_dataset(ctx.data.val.images, ctx.data.val.labels, classes, batch, training=False)
    steps = steps_per_epoch(len(ctx.data.train.labels), batch)
    with scope():
        compile_for_fine_tuning(qat_model, config.train, optimizer=optimizer, from_logits=True,
                                learning_rate=WarmupCosine(lr, epochs * steps, warmup_steps=0))
        if verbose:
            print(f"quantization-aware training: {epochs} epoch(s), {optimizer} optimizer at lr {lr:g}")
        # RUN/tensorboard/qat for the run's model, pruned_qat for exports/pruned.keras.
        stem = ctx.model_path.stem
        fitted = fine_tune(qat_model, train, val=val, epochs=epochs, keep_best=True, verbose=verbose,
                           tensorboard_dir=ctx.folder.tensorboard / ("qat" if stem == "model" else f"{stem}_qat"),
                           tensorboard=config.train.tensorboard)
    logits = []
    for start in range(0, len(ctx.test_labels), 64):
        x = np.asarray(ctx.test_images[start:start + 64], dtype=np.float32)
        logits.append(qat_model(x, training=False).numpy())
    qat_top1 = top1_accuracy(ctx.test_labels, np.concatenate(logits))
    selection = fitted.record(qat_model, optimizer, lr)
    if verbose and val is not None:
        print(f"QAT kept epoch {selection['kept_epoch']} of {epochs} (best validation top-1; 0 = calibrated start)")
    return qat_model, qat_top1, selection
