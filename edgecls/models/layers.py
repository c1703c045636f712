"""Custom Keras layers that must survive saving, safe-mode loading, QAT and conversion.

Each is a single TFLite op, so quantization-aware training can give its output a range.
"""

from __future__ import annotations

from edgecls.tf import keras, tf


@keras.utils.register_keras_serializable(package="edgecls")
class ChannelShift(keras.layers.Layer):
    """``x + offset`` per channel: mean subtraction inside the graph, one ADD op."""

    def __init__(self, offset, **kwargs):
        super().__init__(**kwargs)
        self.offset = [float(v) for v in offset]

    def call(self, x):
        return x + tf.constant(self.offset, dtype=x.dtype)

    def get_config(self):
        return {**super().get_config(), "offset": self.offset}
