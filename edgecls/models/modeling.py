"""Building models from the registry, counting their cost, freezing them for transfer learning."""

from __future__ import annotations

from pathlib import Path

from edgecls.errors import EdgeclsError, first_line
from edgecls.models import get_model_spec
from edgecls.models.architectures import is_head_layer
from edgecls.tf import keras

AUTO_WEIGHTS = "auto"


def choose_weights(arch: str, weights: str | None) -> str | None:
    """What ``auto`` (the default) means for ``arch``: ``imagenet`` where published ImageNet weights
    exist, else ``none``. Any other choice is returned as it is, so an explicit ``imagenet`` on an
    architecture without them stays an error."""
    if weights is None or str(weights).strip().lower() != AUTO_WEIGHTS:
        return weights
    return "imagenet" if get_model_spec(arch).pretrained else "none"


def resolve_weights(weights: str | None):
    """``none`` → None, ``imagenet`` → "imagenet", anything else must be an existing file."""
    if weights is None or str(weights).lower() in ("", "none", "random", "scratch"):
        return None
    if str(weights).lower() == "imagenet":
        return "imagenet"
    path = Path(weights).expanduser()
    if not path.is_file():
        raise EdgeclsError(f"weights file not found: {weights} (use --weights auto, imagenet, none, or a file path)")
    return str(path)


def build_model(arch: str, img_size: int, num_classes: int, *, weights="none", alpha=1.0, dropout=None):
    """A registered architecture at ``img_size`` with a ``num_classes`` head; it takes RGB 0–255 pixels."""
    spec = get_model_spec(arch)
    if img_size < spec.min_size:
        raise EdgeclsError(f"{arch} needs --img-size of at least {spec.min_size}, got {img_size}")
    if num_classes < 2:
        raise EdgeclsError(f"a classifier needs at least two classes, got {num_classes}")
    spec.check_alpha(alpha)
    resolved = resolve_weights(choose_weights(arch, weights))
    kwargs = {"weights": resolved, "alpha": alpha}
    if dropout is not None:
        kwargs["dropout"] = dropout
    try:
        return spec.builder((img_size, img_size, 3), num_classes, **kwargs)
    except EdgeclsError:
        raise
    except Exception as err:  # noqa: BLE001 - Keras reports a failed download as a bare Exception
        if resolved == "imagenet" and _looks_like_download_failure(err):
            raise EdgeclsError(
                f"cannot download the ImageNet weights for {arch} (no internet?): put the Keras weights file "
                "in ~/.keras/models/, pass --weights PATH to a local file, or train from scratch with --weights none"
            ) from None
        if resolved not in (None, "imagenet"):
            raise EdgeclsError(f"cannot load weights from {resolved} into {arch}: {first_line(err)}") from None
        raise


def _looks_like_download_failure(err: Exception) -> bool:
    text = str(err)
    return "URL fetch failure" in text or "fetch" in text.lower() or isinstance(err, OSError)



def count_macs(model) -> int:
    """Multiply-accumulates of one forward pass at the model's input size (convolutions and dense)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
            out_h, out_w = layer.output_shape[1:3]
            k_h, k_w = layer.kernel_size
            in_c = layer.input_shape[-1]
            if isinstance(layer, keras.layers.DepthwiseConv2D):
                total += out_h * out_w * k_h * k_w * in_c * layer.depth_multiplier
            else:
                total += out_h * out_w * k_h * k_w * (in_c // layer.groups) * layer.filters
        elif isinstance(layer, keras.layers.Dense):
            total += int(layer.input_shape[-1]) * layer.units
    return int(total)


def base_layers(model) -> list:
    return [layer for layer in model.layers
            if not is_head_layer(layer) and not isinstance(layer, keras.layers.InputLayer) and layer.weights]


def freeze_base(model) -> None:
    """Phase 1 of transfer learning: only the new classifier head learns."""
    for layer in base_layers(model):
        layer.trainable = False


def unfreeze_top(model, count: int) -> int:
    """Phase 2: unfreeze the top ``count`` weighted base layers (0 = all), keeping BatchNorm frozen.

    BatchNorm statistics estimated on ImageNet are worth more than ones re-estimated from a few
    small batches of a user's dataset, so BatchNorm layers stay in inference mode.
    """
    layers = base_layers(model)
    chosen = layers if count <= 0 else layers[-count:]
    for layer in layers:
        layer.trainable = False
    unfrozen = 0
    for layer in chosen:
        if not isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = True
            unfrozen += 1
    return unfrozen


def describe_models(img_size: int | None = None) -> list[dict]:
    """Every registered architecture with its parameters and MACs at ``img_size`` (default: native)."""
    from edgecls.models import list_models

    rows = []
    for name in list_models():
        spec = get_model_spec(name)
        size = img_size or spec.default_size
        model = build_model(name, size, 1000 if spec.pretrained else 10)
        rows.append({
            "name": name,
            "img_size": size,
            "params": int(model.count_params()),
            "macs": count_macs(model),
            "imagenet": spec.pretrained,
            "alpha": spec.width_multiplier,
            "description": spec.description,
        })
        keras.backend.clear_session()
    return rows
