"""Quantization-aware training with tensorflow-model-optimization, for every registered architecture.

tfmot's default registry knows Keras' built-in layers. edgecls' own single-op layers (and the
preprocessing layers that normalise inside the graph) get a QuantizeConfig that fake-quantizes
their output, so every tensor of the converted graph has a trained range and the TFLite model is
integer from input to logits. A layer that tfmot cannot quantize is named in a one-line error.
"""

from __future__ import annotations

import re

import tensorflow_model_optimization as tfmot

from edgecls.errors import EdgeclsError
from edgecls.optimize.graph_rewrite import split_fused_activations
from edgecls.tf import keras
from edgecls.train.layers import ChannelShift
from edgecls.train.mobilenet_v3 import ShiftedReLU6

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


def quantize_aware_model(model):
    """Wrap ``model`` (weights kept) for quantization-aware training."""

    def annotate(layer):
        if isinstance(layer, keras.layers.InputLayer):
            return layer
        if isinstance(layer, OUTPUT_QUANTIZED):
            return quantize.quantize_annotate_layer(layer, OutputQuantizeConfig())
        return quantize.quantize_annotate_layer(layer)

    annotated = keras.models.clone_model(split_fused_activations(model), clone_function=annotate)
    with scope():
        try:
            return quantize.quantize_apply(annotated)
        except (RuntimeError, ValueError, TypeError) as err:
            raise EdgeclsError(f"quantization-aware training is not possible: {_unsupported(err, model)}") from None


def _unsupported(err: Exception, model) -> str:
    text = str(err)
    # tfmot says "Layer <name>:<class '...Multiply'> is not supported. ..."
    match = re.search(r"Layer (\S+?):<class '([\w.]+)'> is not supported", text)
    if match:
        return f"layer '{match.group(1)}' ({match.group(2).rsplit('.', 1)[-1]}) is not supported by tfmot"
    return text.splitlines()[0][:240] if text else type(err).__name__
