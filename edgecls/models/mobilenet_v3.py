"""MobileNetV3 as a flat graph of quantizable layers, weight-compatible with Keras' applications.

Why not ``keras.applications.MobileNetV3Small`` itself: its hard-swish is built from TFOpLambda
ops that tfmot cannot quantize, and the TFLite converter fuses the canonical
``x * relu6(x + 3) / 6`` into HARD_SWISH, which XNNPACK does not run in int8 — the int8 model then
falls apart into ~19 delegate pieces and is slower than float. Here hard-swish and hard-sigmoid are real
layers, and inside the blocks they are computed six times larger — ``x * relu6(x + 3)`` and
``relu6(x + 3)`` — with the 1/6 folded into the kernel of the next convolution (exact: everything in
between is linear). The converter leaves ADD+MUL that XNNPACK runs in int8 in one partition, with
one elementwise op fewer per activation, and the SE gate's ``+3``/relu6 fold into its convolution.
Layer names and weight shapes follow Keras' implementation, so its ImageNet weight files load,
rescaled by ``copy_weights_by_name``, and give the same outputs.
Architecture: Howard et al., "Searching for MobileNetV3" (2019), tables 1 and 2.
"""

from __future__ import annotations

from edgecls.tf import keras, tf

BN_EPSILON = 1e-3


@keras.utils.register_keras_serializable(package="edgecls")
class ShiftedReLU6(keras.layers.Layer):
    """relu6(x + 3) = 6 * hard_sigmoid(x): one TFLite op (ADD with a fused RELU6).

    Hard-swish is built from it and a Keras ``Multiply``, so every tensor in the converted graph is
    the output of exactly one layer: quantization-aware training can then give each one a range.
    """

    def call(self, x):
        return tf.nn.relu6(x + 3.0)


def scaled_hard_swish(x, name: str):
    """6 * hard_swish(x) = x * relu6(x + 3); the consumer's kernel (or a rescale) carries the 1/6."""
    gate = ShiftedReLU6(name=f"{name}/hard_sigmoid6")(x)
    return keras.layers.Multiply(name=f"{name}/hard_swish")([x, gate])


def make_divisible(value: float, divisor: int = 8) -> int:
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:  # never round down by more than 10 %
        rounded += divisor
    return rounded


# (expansion, output channels, kernel, stride, squeeze-excite, hard-swish) per inverted residual block.
SMALL_BLOCKS = (
    (1, 16, 3, 2, True, False),
    (72 / 16, 24, 3, 2, False, False),
    (88 / 24, 24, 3, 1, False, False),
    (4, 40, 5, 2, True, True),
    (6, 40, 5, 1, True, True),
    (6, 40, 5, 1, True, True),
    (3, 48, 5, 1, True, True),
    (3, 48, 5, 1, True, True),
    (6, 96, 5, 2, True, True),
    (6, 96, 5, 1, True, True),
    (6, 96, 5, 1, True, True),
)
LARGE_BLOCKS = (
    (1, 16, 3, 1, False, False),
    (4, 24, 3, 2, False, False),
    (3, 24, 3, 1, False, False),
    (3, 40, 5, 2, True, False),
    (3, 40, 5, 1, True, False),
    (3, 40, 5, 1, True, False),
    (6, 80, 3, 2, False, True),
    (2.5, 80, 3, 1, False, True),
    (2.3, 80, 3, 1, False, True),
    (2.3, 80, 3, 1, False, True),
    (6, 112, 3, 1, True, True),
    (6, 112, 3, 1, True, True),
    (6, 160, 5, 2, True, True),
    (6, 160, 5, 1, True, True),
    (6, 160, 5, 1, True, True),
)


def mobilenet_v3_features(inputs, variant: str, alpha: float = 1.0, minimalistic: bool = False,
                          bn_momentum: float = 0.999):
    """The MobileNetV3 feature extractor (up to the last 1x1 convolution) on RGB 0–255 ``inputs``.

    Returns ``(features, kernel_scales, feature_scale)``: ``kernel_scales[layer]`` is the factor by
    which that layer's input is larger than in Keras' MobileNetV3 (its kernel is divided by it when
    Keras weights are copied in), and the features themselves are ``feature_scale`` times larger.
    """
    blocks = SMALL_BLOCKS if variant == "small" else LARGE_BLOCKS
    kernel_scales: dict[str, float] = {}

    def activation(x, hard_swish: bool, name: str):
        """Returns the activation's output and how much larger than hard-swish/ReLU it is."""
        if hard_swish and not minimalistic:
            return scaled_hard_swish(x, name), 6.0
        return keras.layers.ReLU(name=f"{name}/relu")(x), 1.0

    def batchnorm(x, name):
        return keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=bn_momentum, name=name)(x)

    # x / 127.5 - 1 as two single-op layers, so QAT can give the intermediate tensor a range. Both
    # factors are scalars: XNNPACK's broadcast of a per-channel (3-vector) ADD over the input image
    # costs +0.3 ms fp32 / +0.7 ms int8 on MobileNetV3-Small-224 (measured), a scalar ADD nothing.
    x = keras.layers.Rescaling(1.0 / 127.5, name="rescaling")(inputs)
    x = keras.layers.Rescaling(1.0, offset=-1.0, name="rescaling_offset")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False, name="Conv")(x)
    x = batchnorm(x, "Conv/BatchNorm")
    x, scale = activation(x, True, "Conv")
    for block_id, (expansion, filters, kernel, stride, squeeze, hard_swish) in enumerate(blocks):
        if minimalistic:
            kernel, squeeze = 3, False
        x = _inverted_residual(x, scale, block_id, expansion, make_divisible(filters * alpha), kernel, stride,
                               squeeze, lambda t, n, hs=hard_swish: activation(t, hs, n), batchnorm,
                               kernel_scales)
        scale = 1.0  # every block ends in a BatchNorm'd projection at Keras' scale
    channels = make_divisible(x.shape[-1] * 6)
    x = keras.layers.Conv2D(channels, 1, padding="same", use_bias=False, name="Conv_1")(x)
    x = batchnorm(x, "Conv_1/BatchNorm")
    # The last activation stays six times larger too (or plain ReLU when minimalistic); the caller
    # rescales after global pooling, where it costs one multiply on a vector.
    x, scale = activation(x, True, "Conv_1")
    return x, kernel_scales, scale


def _inverted_residual(x, scale, block_id, expansion, filters, kernel, stride, squeeze, activation, batchnorm,
                       kernel_scales):
    prefix = "expanded_conv/" if block_id == 0 else f"expanded_conv_{block_id}/"
    in_channels = x.shape[-1]
    shortcut = x
    if block_id:
        x = keras.layers.Conv2D(make_divisible(in_channels * expansion), 1, padding="same", use_bias=False,
                                name=prefix + "expand")(x)
        x = batchnorm(x, prefix + "expand/BatchNorm")
        x, scale = activation(x, prefix + "expand")
    if stride == 2:
        x = keras.layers.ZeroPadding2D(_stride2_padding(x.shape[1:3], kernel), name=prefix + "depthwise/pad")(x)
    kernel_scales[prefix + "depthwise"] = scale
    x = keras.layers.DepthwiseConv2D(kernel, strides=stride, padding="same" if stride == 1 else "valid",
                                     use_bias=False, name=prefix + "depthwise")(x)
    x = batchnorm(x, prefix + "depthwise/BatchNorm")
    x, scale = activation(x, prefix + "depthwise")
    if squeeze:
        x, scale = _squeeze_excite(x, scale, make_divisible(in_channels * expansion), prefix, kernel_scales)
    kernel_scales[prefix + "project"] = scale
    x = keras.layers.Conv2D(filters, 1, padding="same", use_bias=False, name=prefix + "project")(x)
    x = batchnorm(x, prefix + "project/BatchNorm")
    if stride == 1 and in_channels == filters:
        x = keras.layers.Add(name=prefix + "Add")([shortcut, x])
    return x


def _squeeze_excite(inputs, scale, channels, prefix, kernel_scales):
    x = keras.layers.GlobalAveragePooling2D(keepdims=True, name=prefix + "squeeze_excite/AvgPool")(inputs)
    kernel_scales[prefix + "squeeze_excite/Conv"] = scale
    x = keras.layers.Conv2D(make_divisible(channels * 0.25), 1, padding="same", name=prefix + "squeeze_excite/Conv")(x)
    x = keras.layers.ReLU(name=prefix + "squeeze_excite/Relu")(x)
    x = keras.layers.Conv2D(channels, 1, padding="same", name=prefix + "squeeze_excite/Conv_1")(x)
    x = ShiftedReLU6(name=prefix + "squeeze_excite/hard_sigmoid6")(x)
    return keras.layers.Multiply(name=prefix + "squeeze_excite/Mul")([inputs, x]), scale * 6.0


def _stride2_padding(spatial, kernel):
    # Pads like TensorFlow's "same" for stride 2 but explicitly, as the ImageNet weights expect.
    pads = []
    for size in spatial:
        odd_adjust = 1 - (size % 2) if size is not None else 1
        pads.append((kernel // 2 - odd_adjust, kernel // 2))
    return tuple(pads)


def copy_weights_by_name(source, target, kernel_scales: dict[str, float] | None = None) -> int:
    """Copy every weighted layer of ``source`` into the same-named layer of ``target``.

    Kernels listed in ``kernel_scales`` are divided by their factor (biases are not: the factor
    scales the layer's input, and the convolution is linear in it).
    """
    kernel_scales = kernel_scales or {}
    copied = 0
    for layer in source.layers:
        if not layer.weights:
            continue
        weights = layer.get_weights()
        factor = kernel_scales.get(layer.name, 1.0)
        if factor != 1.0:
            weights = [weights[0] / factor, *weights[1:]]
        target.get_layer(layer.name).set_weights(weights)
        copied += 1
    return copied
