"""Model builders. Every model takes RGB pixels 0–255 and normalises inside the graph.

Graphs are flat (no model nested in a model): tfmot's pruning and quantization wrappers refuse
nested models, and a flat graph freezes and unfreezes layer by layer for transfer learning.
Keras application bases are built on our own input tensor (``input_tensor=``), which keeps their
layer names, so their ImageNet weight files load unchanged.
"""

from __future__ import annotations

from edgecls.errors import EdgeclsError
from edgecls.models import whitened_cnn as _whitened
from edgecls.models.layers import ChannelShift
from edgecls.models.mobilenet_v3 import copy_weights_by_name, mobilenet_v3_features
from edgecls.models.registry import register_model
from edgecls.tf import keras

HEAD_PREFIX = "head_"
INPUT_NAME = "image"


def is_head_layer(layer) -> bool:
    return layer.name.startswith(HEAD_PREFIX)


def classifier_head(features, num_classes: int, dropout: float, feature_scale: float = 1.0):
    """The head every edgecls classifier ends with: global average pool, dropout, Dense, softmax.

    Its layers carry the ``head_`` prefix (``head_logits`` is where converters cut for logits,
    fine-tuning finds the head by name); ``feature_scale`` divides the pooled features first.
    """
    x = keras.layers.GlobalAveragePooling2D(name="head_pool")(features)
    if feature_scale != 1.0:
        x = keras.layers.Rescaling(1.0 / feature_scale, name="head_rescale")(x)
    if dropout > 0:
        x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    x = keras.layers.Dense(num_classes, name="head_logits")(x)
    # float32 so the probabilities stay exact under a mixed-precision policy.
    return keras.layers.Activation("softmax", dtype="float32", name="head_probs")(x)


def _application(app_fn, name, input_shape, num_classes, weights, dropout, preprocess=None, **app_kwargs):
    inputs = keras.Input(shape=input_shape, name=INPUT_NAME)
    x = preprocess(inputs) if preprocess else inputs
    try:
        base = app_fn(input_tensor=x, input_shape=input_shape, include_top=False, weights=weights, **app_kwargs)
    except ValueError as err:  # Keras' own checks: size too small, alpha without weights, ...
        raise EdgeclsError(f"{name}: {err}") from None
    if weights is None:
        _settle_batchnorm_quickly(base)
    return keras.Model(inputs, classifier_head(base.output, num_classes, dropout), name=name)


def _settle_batchnorm_quickly(model, momentum: float = 0.9) -> None:
    # Keras' applications use BatchNorm momentum 0.99–0.999, tuned for ImageNet's million steps.
    # Trained from scratch on a few thousand images, the moving statistics would still be near
    # their initial values at the end, and evaluation (which uses them) would sit at chance.
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = momentum


def _mobilenet_v3(variant, name, input_shape, num_classes, weights, alpha, dropout, minimalistic=False):
    inputs = keras.Input(shape=input_shape, name=INPUT_NAME)
    features, kernel_scales, feature_scale = mobilenet_v3_features(
        inputs, variant, alpha=alpha, minimalistic=minimalistic, bn_momentum=0.999 if weights is not None else 0.9)
    model = keras.Model(inputs, classifier_head(features, num_classes, dropout, feature_scale), name=name)
    if weights is not None:
        # Keras' own builder downloads (or reads) the weight file; we copy its tensors by layer name.
        app_fn = keras.applications.MobileNetV3Small if variant == "small" else keras.applications.MobileNetV3Large
        try:
            stock = app_fn(input_shape=input_shape, include_top=False, weights=weights, alpha=alpha,
                           minimalistic=minimalistic, include_preprocessing=True)
        except ValueError as err:
            raise EdgeclsError(f"{name}: {err}") from None
        copy_weights_by_name(stock, model, kernel_scales)
    return model


@register_model(
    "mobilenet_v3_small",
    description="MobileNetV3-Small: the default edge model (alpha = width multiplier)",
    pretrained=True,
    pretrained_alphas=(0.75, 1.0),
    fine_tune_layers=60,
    width_multiplier=True,
    test_kwargs={"alpha": 0.35},
    # Its QAT graph takes ~45 s through the TFLite converter here; convert_qat itself runs on the
    # small CNNs in the default run, and this model's QAT wrapping and post-training int8 do too.
    test_slow_checks=("qat_tflite",),
)
def mobilenet_v3_small(input_shape, num_classes, *, weights=None, alpha=1.0, dropout=0.2):
    return _mobilenet_v3("small", "mobilenet_v3_small", input_shape, num_classes, weights, alpha, dropout)


@register_model(
    "mobilenet_v3_small_minimalistic",
    description="MobileNetV3-Small without SE and hard-swish: fastest int8, a little less accurate",
    pretrained=True,
    fine_tune_layers=50,
    width_multiplier=True,
    test_kwargs={"alpha": 0.35},
    test_slow=True,  # its blocks are mobilenet_v3_small's without SE and hard-swish, which the default run checks
)
def mobilenet_v3_small_minimalistic(input_shape, num_classes, *, weights=None, alpha=1.0, dropout=0.2):
    return _mobilenet_v3("small", "mobilenet_v3_small_minimalistic", input_shape, num_classes, weights, alpha,
                         dropout, minimalistic=True)


@register_model(
    "mobilenet_v3_large",
    description="MobileNetV3-Large: more accurate, ~4x the MACs of Small",
    pretrained=True,
    pretrained_alphas=(0.75, 1.0),
    fine_tune_layers=80,
    width_multiplier=True,
    test_kwargs={"alpha": 0.35},
    test_slow=True,  # the same blocks as mobilenet_v3_small, which the default run checks
)
def mobilenet_v3_large(input_shape, num_classes, *, weights=None, alpha=1.0, dropout=0.2):
    return _mobilenet_v3("large", "mobilenet_v3_large", input_shape, num_classes, weights, alpha, dropout)


def _register_efficientnet(variant: str, app_fn, default_size: int):
    name = f"efficientnet_{variant}"

    @register_model(
        name,
        description=f"EfficientNet-{variant.upper()} (native size {default_size})",
        pretrained=True,
        default_size=default_size,
        fine_tune_layers=60,
        searched=variant == "b0",  # b1-b3: larger native sizes and several times b0's MACs
        test_slow=variant != "b0",  # b1-b3 scale b0's graph up; b0 is checked in the default run
        # Its conversions take minutes here; mobilenet_v3_small takes squeeze-excite and the same
        # converters through the default run, b0 its build, train step, save and Grad-CAM.
        test_slow_checks=("int8", "qat", "qat_tflite", "onnx"),
    )
    def build(input_shape, num_classes, *, weights=None, alpha=1.0, dropout=0.2):
        # No width_multiplier in the registry: EfficientNet's width is fixed per variant, and
        # build_model refuses an alpha other than 1 before it gets here.
        return _application(app_fn, name, input_shape, num_classes, weights, dropout)

    return build


for _variant, _fn, _size in (
    ("b0", keras.applications.EfficientNetB0, 224),
    ("b1", keras.applications.EfficientNetB1, 240),
    ("b2", keras.applications.EfficientNetB2, 260),
    ("b3", keras.applications.EfficientNetB3, 300),
):
    _register_efficientnet(_variant, _fn, _size)


@register_model(
    "resnet50",
    description="ResNet50: large and slow on edge devices; a transfer-learning baseline",
    pretrained=True,
    fine_tune_layers=40,
    searched=False,  # 25 M parameters: no edge search candidate
    test_slow=True,  # 25 M parameters: each conversion takes tens of seconds
)
def resnet50(input_shape, num_classes, *, weights=None, alpha=1.0, dropout=0.2):
    # Keras' ImageNet weights expect BGR with the ImageNet mean subtracted. The mean is subtracted
    # here (in RGB order); the channel order is handled by flipping the first kernel's input
    # channels below — exact, and one op fewer than reversing every image.
    shift = ChannelShift(offset=(-123.68, -116.779, -103.939), name="normalize")
    model = _application(keras.applications.ResNet50, "resnet50", input_shape, num_classes, weights, dropout,
                         preprocess=shift)
    if weights is not None:
        conv1 = model.get_layer("conv1_conv")
        kernel, bias = conv1.get_weights()
        conv1.set_weights([kernel[:, :, ::-1, :], bias])
    return model


def _conv_bn_relu(x, filters, name, strides=1, **batchnorm):
    x = keras.layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    # momentum 0.9: the moving statistics must settle within the few hundred steps of a small dataset.
    x = keras.layers.BatchNormalization(**{"momentum": 0.9, **batchnorm}, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


@register_model(
    "simple_cnn",
    description="Small VGG-style CNN (the seeds' baseline): good from scratch on small images",
    pretrained=False,
    default_size=32,
    width_multiplier=True,
    test_kwargs={"alpha": 0.25},
)
def simple_cnn(input_shape, num_classes, *, weights=None, alpha=1.0, dropout=0.3):
    inputs = keras.Input(shape=input_shape, name=INPUT_NAME)
    x = keras.layers.Rescaling(1.0 / 255.0, name="normalize")(inputs)
    for stage, filters in enumerate((32, 64, 128), start=1):
        width = max(8, int(round(filters * alpha)))
        x = _conv_bn_relu(x, width, f"block{stage}a")
        x = _conv_bn_relu(x, width, f"block{stage}b")
        x = keras.layers.MaxPooling2D(name=f"block{stage}_pool")(x)
    model = keras.Model(inputs, classifier_head(x, num_classes, dropout), name="simple_cnn")
    return _load_local_weights(model, weights)


@register_model(
    "resnet9",
    description="ResNet-9 for small images (CIFAR-size): the fastest route to high accuracy from scratch",
    pretrained=False,
    default_size=32,
    width_multiplier=True,
    test_kwargs={"alpha": 0.125},
)
def resnet9(input_shape, num_classes, *, weights=None, alpha=1.0, dropout=0.0):
    # The residual network of the DAWNBench CIFAR-10 records (prep, three stages, two residual
    # blocks); alpha scales its widths 64-128-256-512, so 0.375 trains an epoch of CIFAR-10 in under
    # a minute on two CPU cores.
    def width(filters):
        return max(8, int(round(filters * alpha)))

    def residual(x, filters, name):
        y = _conv_bn_relu(x, filters, f"{name}a")
        y = _conv_bn_relu(y, filters, f"{name}b")
        return keras.layers.Add(name=f"{name}_add")([x, y])

    inputs = keras.Input(shape=input_shape, name=INPUT_NAME)
    x = keras.layers.Rescaling(1.0 / 255.0, name="normalize")(inputs)
    x = _conv_bn_relu(x, width(64), "prep")
    x = _conv_bn_relu(x, width(128), "stage1")
    x = keras.layers.MaxPooling2D(name="stage1_pool")(x)
    x = residual(x, width(128), "stage1_res")
    x = _conv_bn_relu(x, width(256), "stage2")
    x = keras.layers.MaxPooling2D(name="stage2_pool")(x)
    x = _conv_bn_relu(x, width(512), "stage3")
    x = keras.layers.MaxPooling2D(name="stage3_pool")(x)
    x = residual(x, width(512), "stage3_res")
    model = keras.Model(inputs, classifier_head(x, num_classes, dropout), name="resnet9")
    return _load_local_weights(model, weights)


@register_model(
    "whitened_cnn",
    description="The CIFAR-10 speed-run network (airbench-style, patch whitening): most accuracy per "
                "training minute on small images",
    pretrained=False,
    default_size=32,
    data_init=_whitened.init_patch_whitening,
    frozen_layers=(_whitened.WHITEN_LAYER,),
    width_multiplier=True,
    test_kwargs={"alpha": 0.125},
)
def whitened_cnn(input_shape, num_classes, *, weights=None, alpha=1.0, dropout=0.0):
    # airbench's network, changed for deployment (see edgecls.models.whitened_cnn): ReLU instead of
    # GELU, and BatchNorm before the pool, so the converter folds it into the convolution.
    inputs = keras.Input(shape=input_shape, name=INPUT_NAME)
    # Set from the training data by the registry's data_init; trainable=False, so training and
    # fine-tuning leave it alone. Its ReLU keeps each whitened direction's positive part and its
    # negative's (the filters come in ± pairs), so no information is lost and the layer is not linear.
    x = keras.layers.Conv2D(2 * _whitened.PATCH * _whitened.PATCH * 3, _whitened.PATCH, padding="valid",
                            activation="relu", name=_whitened.WHITEN_LAYER, trainable=False)(inputs)
    # scale=False: a fixed BatchNorm scale, as in airbench (weight decay would shrink it to no
    # effect); momentum 0.6 lets the statistics follow the weights of a run only ~1,000 steps long.
    batchnorm = {"momentum": 0.6, "epsilon": 1e-5, "scale": False}
    convs = []
    for index, filters in enumerate(_whitened.WIDTHS, start=1):
        width = max(8, int(round(filters * alpha)))
        x = _conv_bn_relu(x, width, f"group{index}a", **batchnorm)
        x = keras.layers.MaxPooling2D(name=f"group{index}_pool")(x)
        x = _conv_bn_relu(x, width, f"group{index}b", **batchnorm)
        convs += [f"group{index}a_conv", f"group{index}b_conv"]
    # The max over the last map (airbench's pooling); the head's average pool then sees 1×1.
    x = keras.layers.MaxPooling2D(pool_size=tuple(x.shape[1:3]), name="features_pool")(x)
    # airbench divides the logits by 9; dividing the pooled features does the same to the
    # Dense layer's input and keeps the softmax from saturating early.
    model = keras.Model(inputs, classifier_head(x, num_classes, dropout, feature_scale=9.0), name="whitened_cnn")
    _whitened.dirac_init([model.get_layer(name) for name in convs])
    return _load_local_weights(model, weights)


@register_model(
    "tiny_cnn",
    description="Two-convolution model for tests and smoke runs; not for real use",
    pretrained=False,
    default_size=32,
    test_only=True,
)
def tiny_cnn(input_shape, num_classes, *, weights=None, alpha=1.0, dropout=0.0):
    inputs = keras.Input(shape=input_shape, name=INPUT_NAME)
    x = keras.layers.Rescaling(1.0 / 255.0, name="normalize")(inputs)
    x = _conv_bn_relu(x, 8, "block1", strides=2)
    x = _conv_bn_relu(x, 16, "block2", strides=2)
    model = keras.Model(inputs, classifier_head(x, num_classes, dropout), name="tiny_cnn")
    return _load_local_weights(model, weights)


def _load_local_weights(model, weights):
    if weights is None:
        return model
    if weights == "imagenet":
        raise EdgeclsError(f"{model.name} has no ImageNet weights; use --weights none or a weights file")
    # A weights file from an earlier run of the same architecture; layers are matched by name
    # so a different number of classes only skips the head.
    model.load_weights(weights, by_name=True, skip_mismatch=True)
    return model
