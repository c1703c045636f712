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


from edgecls.errors import EdgeclsError, first_line
from edgecls.metrics import top1_accuracy
from edgecls.models.layers import ChannelShift
from edgecls.models.mobilenet_v3 import ShiftedReLU6
from edgecls.optimize.graph_rewrite import split_fused_activations

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


def train_quantization_aware(ctx, *, epochs: int, lr: float, batch_size: int | None,
                             preserve_sparsity: bool = False, verbose: int = 1):
    """Fine-tune the run's model with fake quantization; returns (QAT model, its test top-1)."""
    import numpy as np

    from edgecls.optimize.tflite_convert import logits_model
    from edgecls.train.callbacks import epoch_progress
    from edgecls.train.pipeline import make_dataset, steps_per_epoch
    from edgecls.train.schedules import WarmupCosine

    config = ctx.config
    batch = batch_size or config.train.batch_size
    classes = len(ctx.labels)
    qat_model = quantize_aware_model(logits_model(ctx.model), preserve_sparsity=preserve_sparsity)
    train = make_dataset(ctx.data.train.images, ctx.data.train.labels, classes, batch, training=True,
                         augment=config.augment, seed=config.train.seed)
    val = None
    if len(ctx.data.val.labels):
        val = make_dataset(ctx.data.val.images, ctx.data.val.labels, classes, batch, training=False)
    steps = steps_per_epoch(len(ctx.data.train.labels), batch)
    with scope():
        qat_model.compile(
            optimizer=keras.optimizers.Adam(WarmupCosine(lr, epochs * steps, warmup_steps=0)),
            loss=keras.losses.CategoricalCrossentropy(from_logits=True,
                                                      label_smoothing=config.train.label_smoothing),
            metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        )
        if verbose:
            print(f"quantization-aware training: {epochs} epoch(s) at lr {lr:g}")
        with epoch_progress(bool(verbose)) as progress:
            qat_model.fit(train, validation_data=val, epochs=epochs, callbacks=progress, verbose=0)
    logits = []
    for start in range(0, len(ctx.test_labels), 64):
        x = np.asarray(ctx.test_images[start:start + 64], dtype=np.float32)
        logits.append(qat_model(x, training=False).numpy())
    qat_top1 = top1_accuracy(ctx.test_labels, np.concatenate(logits))
    return qat_model, qat_top1
