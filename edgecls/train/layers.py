"""Custom Keras layers that must survive saving, safe-mode loading and conversion."""

from __future__ import annotations

from edgecls.tf import keras, tf


@keras.utils.register_keras_serializable(package="edgecls")
class ChannelNormalize(keras.layers.Layer):
    """``(x[..., order] - mean) / std`` per channel, inside the graph.

    Models take RGB 0–255 so every runtime is fed the same uint8 image; architectures whose
    ImageNet weights expect other inputs (ResNet50's BGR minus the mean) normalise here.
    """

    def __init__(self, mean, std, reverse_channels=False, **kwargs):
        super().__init__(**kwargs)
        self.mean = [float(m) for m in mean]
        self.std = [float(s) for s in std]
        self.reverse_channels = bool(reverse_channels)

    def call(self, x):
        if self.reverse_channels:
            x = tf.reverse(x, axis=[-1])
        mean = tf.constant(self.mean, dtype=x.dtype)
        inv_std = tf.constant([1.0 / s for s in self.std], dtype=x.dtype)
        return (x - mean) * inv_std

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "std": self.std, "reverse_channels": self.reverse_channels}
