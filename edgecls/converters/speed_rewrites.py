"""Rewrites that make a converted model faster while computing the same function.

Applied to the Keras graph just before TFLite conversion (the trained model itself is never
changed, so its weights, ImageNet weight loading and training stay as built). All three are exact
in real arithmetic; they move work from XNNPACK kernels that run badly on the shapes of a network's
first layers to ones that run well:

* **paired stem**: a 3×3 stride-2 convolution on a 3-channel image reads 3 bytes per kernel tap,
  which XNNPACK's int8 kernels pad to their k-block. Reshaping the image (free: the memory is
  unchanged) so each pair of horizontally adjacent pixels becomes one pixel of 6 channels turns it
  into a 3×2 convolution with strides (2, 1) over 6 channels: 6 taps instead of 9, twice the bytes
  per tap, and the weights of the fourth pixel column zero. MobileNetV3-Small-224 int8: its stem
  convolution 20–30 % faster (benchmarks/results/int8_profile.md).
* **fused pointwise pair**: a 1×1 convolution, its BatchNorm and a following 1×1 convolution
  with nothing else reading the tensors in between are one linear map: one convolution with the
  product kernel. Done only when that costs no more multiply-adds than the two did (MobileNetV3-
  Small's first block, whose 16→16 projection feeds the next block's 16→72 expansion); it also
  drops one int8 requantization of the intermediate tensor.
* **tiled gate**: a squeeze-excite multiply of an (H, W, C) tensor by a (1, 1, C) gate runs in
  XNNPACK as H·W calls of C elements each; on few channels (MobileNetV3-Small's first block:
  56×56 calls of 16) the per-call cost dominates. The gate's last 1×1 convolution instead writes
  the gate W times over (its kernel tiled), reshaped to (1, W, C): H calls of W·C. Its multiply
  took half the time (12 against 25 µs at 224 px), for 7 KB more weights in the int8 file.

Post-training int8 (:func:`edgecls.converters.tflite_convert.convert` and the calibrated int8 of
``edgecls optimize``) and quantization-aware training all start from this graph. QAT fine-tunes it as
it is: the paired stem's zero column and the tiled gate's copies are free to move apart, which
gives a network at least as expressive.

Like :mod:`edgecls.converters.graph_rewrite`, the rewrites work on the functional model's config,
so they apply to any model that has these patterns, ours or a user's; a model without them (or
not functional, or quantization-aware) is returned as it is.
"""

from __future__ import annotations

import copy

import numpy as np

from edgecls.converters.graph_rewrite import _rewire
from edgecls.tf import keras

PAIRED_STEM_MAX_CHANNELS = 4
TILED_GATE_MAX_CHANNELS = 32  # from 96 channels on, tiling measured no faster
ELEMENTWISE = ("ReLU", "Activation", "ShiftedReLU6")


def faster_equivalent(model):
    """``(model, rewrites)``: ``model`` with every rewrite that applies, and what each one changed."""
    try:
        config = copy.deepcopy(model.get_config())
    except NotImplementedError:
        return model, []
    if not isinstance(config, dict) or "layers" not in config or "output_layers" not in config:
        return model, []
    graph = _Graph(model, config)
    transforms, rewrites = _plan_rewrites(graph)
    if not rewrites:
        return model, []
    config["layers"] = [graph.layers[name] for name in graph.order if name in graph.layers]
    try:
        rebuilt = keras.Model.from_config(config)
    except (TypeError, ValueError):  # a layer Keras cannot rebuild from its config: convert as it is
        return model, []
    for layer in rebuilt.layers:
        if not layer.weights:
            continue
        weights = transforms[layer.name]() if layer.name in transforms else model.get_layer(layer.name).get_weights()
        layer.set_weights(weights)
    return rebuilt, rewrites


def _plan_rewrites(graph: _Graph) -> tuple[dict[str, callable], list[str]]:
    """Rewrite ``graph``'s configs in place; {layer: its new weights, as a function}, and what changed.

    Paired stems first, then fused pointwise pairs, then tiled gates; each layer is rewritten once.
    """
    transforms: dict[str, callable] = {}
    rewrites = []
    for name in list(graph.order):
        if name in graph.layers and _pairable_stem(graph, name):
            transforms[name] = _pair_stem(graph, name)
            rewrites.append(f"paired stem: {name}")
    for name in list(graph.order):
        fused = _fusable_pointwise(graph, name) if name in graph.layers else None
        if fused and not set(fused) & set(transforms):
            transforms[fused[2]] = _fuse_pointwise(graph, *fused)
            rewrites.append(f"fused pointwise pair: {' + '.join(fused)}")
    for name in list(graph.order):
        gate = _tileable_gate(graph, name) if name in graph.layers else None
        if gate and gate[0] not in transforms:
            transforms[gate[0]] = _tile_gate(graph, name, *gate)
            rewrites.append(f"tiled gate: {name}")
    return transforms, rewrites


class _Graph:
    """The config's layers by name, in order, with who reads each one's output."""

    def __init__(self, model, config):
        self.model = model
        self.layers = {layer["name"]: layer for layer in config["layers"]}
        self.order = [layer["name"] for layer in config["layers"]]
        self.outputs = {ref[0] for ref in config["output_layers"]}

    def inputs_of(self, name: str) -> list:
        nodes = self.layers[name].get("inbound_nodes", [])
        return nodes[0] if len(nodes) == 1 else []

    def readers(self, name: str) -> list[str]:
        return [other for other in self.order if other in self.layers
                and name in _referenced(self.layers[other].get("inbound_nodes", []))]

    def sole_reader(self, name: str) -> str | None:
        readers = self.readers(name)
        return readers[0] if len(readers) == 1 and name not in self.outputs else None

    def rename_input(self, name: str, old: str, new: str) -> None:
        self.layers[name]["inbound_nodes"] = _rewire(self.layers[name]["inbound_nodes"], {old: new})


def _referenced(value) -> set[str]:
    """Layer names in inbound-node references ``[name, node, tensor, ...]`` at any depth (TFOpLambda
    layers nest them among their call arguments)."""
    if isinstance(value, list):
        if value and isinstance(value[0], str) and len(value) >= 3:
            return {value[0]}
        return set().union(*(_referenced(item) for item in value)) if value else set()
    if isinstance(value, dict):
        return set().union(*(_referenced(item) for item in value.values())) if value else set()
    return set()


def _plain_conv(graph, name: str, kernel, strides) -> bool:
    layer = graph.layers[name]
    cfg = layer["config"]
    return (layer["class_name"] == "Conv2D" and tuple(cfg["kernel_size"]) == kernel
            and tuple(cfg["strides"]) == strides and tuple(cfg.get("dilation_rate", (1, 1))) == (1, 1)
            and cfg.get("groups", 1) == 1 and cfg.get("data_format", "channels_last") == "channels_last"
            and len(graph.inputs_of(name)) == 1 and len(layer.get("inbound_nodes", [])) == 1)


def _pairable_stem(graph, name: str) -> bool:
    if not _plain_conv(graph, name, (3, 3), (2, 2)) or graph.layers[name]["config"]["padding"] not in ("same", "valid"):
        return False
    _, height, width, channels = graph.model.get_layer(name).input_shape
    return None not in (height, width) and width % 2 == 0 and channels <= PAIRED_STEM_MAX_CHANNELS


def _pair_stem(graph, name: str):
    layer = graph.layers[name]
    _, height, width, channels = graph.model.get_layer(name).input_shape
    pairs = f"{name}_pixel_pairs"
    graph.layers[pairs] = {
        "class_name": "Reshape", "name": pairs, "inbound_nodes": copy.deepcopy(layer["inbound_nodes"]),
        "config": {"name": pairs, "trainable": False, "dtype": layer["config"].get("dtype", "float32"),
                   "target_shape": (height, width // 2, 2 * channels)},
    }
    graph.order.insert(graph.order.index(name), pairs)
    graph.rename_input(name, graph.inputs_of(name)[0][0], pairs)
    layer["config"]["kernel_size"], layer["config"]["strides"] = (3, 2), (2, 1)

    def weights():
        kernel, *rest = graph.model.get_layer(name).get_weights()
        padded = np.zeros((3, 4, *kernel.shape[2:]), kernel.dtype)  # a fourth, zero-weighted pixel column
        padded[:, :3] = kernel
        return [padded.reshape(3, 2, 2 * channels, kernel.shape[-1]), *rest]

    return weights


def _fusable_pointwise(graph, first: str):
    if not _plain_conv(graph, first, (1, 1), (1, 1)) or graph.layers[first]["config"].get("activation") != "linear":
        return None
    norm = graph.sole_reader(first)
    if norm is None or graph.layers[norm]["class_name"] != "BatchNormalization":
        return None
    axis = graph.layers[norm]["config"].get("axis")
    if axis not in (-1, 3, [-1], [3]):
        return None
    second = graph.sole_reader(norm)
    if second is None or not _plain_conv(graph, second, (1, 1), (1, 1)):
        return None
    channels_in = graph.model.get_layer(first).input_shape[-1]
    middle = graph.layers[first]["config"]["filters"]
    channels_out = graph.layers[second]["config"]["filters"]
    if channels_in * channels_out > channels_in * middle + middle * channels_out:
        return None
    return first, norm, second


def _fuse_pointwise(graph, first: str, norm: str, second: str):
    graph.layers[second]["inbound_nodes"] = copy.deepcopy(graph.layers[first]["inbound_nodes"])
    graph.layers[second]["config"]["use_bias"] = True
    del graph.layers[first], graph.layers[norm]

    def weights():
        a, bn, b = (graph.model.get_layer(n) for n in (first, norm, second))
        w_a = a.kernel.numpy().astype(np.float64)[0, 0]
        bias_a = a.bias.numpy().astype(np.float64) if a.use_bias else 0.0
        gamma = bn.gamma.numpy().astype(np.float64) if bn.scale else 1.0
        beta = bn.beta.numpy().astype(np.float64) if bn.center else 0.0
        scale = gamma / np.sqrt(bn.moving_variance.numpy().astype(np.float64) + bn.epsilon)
        shift = beta - scale * bn.moving_mean.numpy().astype(np.float64)
        w_b = b.kernel.numpy().astype(np.float64)[0, 0]
        bias_b = b.bias.numpy().astype(np.float64) if b.use_bias else 0.0
        kernel = (w_a * scale) @ w_b
        bias = (scale * bias_a + shift) @ w_b + bias_b
        return [kernel[None, None].astype(np.float32), bias.astype(np.float32)]

    return weights


def _tileable_gate(graph, multiply: str):
    """``(gate conv, activation, index of the gate among the multiply's inputs)``, or None."""
    layer = graph.layers[multiply]
    inputs = graph.inputs_of(multiply)
    if layer["class_name"] != "Multiply" or len(inputs) != 2 or len(layer.get("inbound_nodes", [])) != 1:
        return None
    shapes = graph.model.get_layer(multiply).input_shape
    for index in (0, 1):
        gate_shape, tensor_shape = shapes[index], shapes[1 - index]
        activation = inputs[index][0]
        if (len(tensor_shape) != 4 or tuple(gate_shape[1:3]) != (1, 1) or None in tensor_shape[1:]
                or tensor_shape[3] > TILED_GATE_MAX_CHANNELS or tensor_shape[2] < 2 or gate_shape[3] != tensor_shape[3]
                or activation not in graph.layers
                or graph.layers[activation]["class_name"].split(">")[-1] not in ELEMENTWISE
                or graph.sole_reader(activation) != multiply):
            continue
        conv = graph.inputs_of(activation)[0][0] if len(graph.inputs_of(activation)) == 1 else None
        if conv in graph.layers and _plain_conv(graph, conv, (1, 1), (1, 1)) and graph.sole_reader(conv) == activation:
            return conv, activation, index
    return None


def _tile_gate(graph, multiply: str, conv: str, activation: str, index: int):
    width, channels = graph.model.get_layer(multiply).input_shape[1 - index][2:]
    graph.layers[conv]["config"]["filters"] = width * channels
    tiled = f"{multiply}_tiled_gate"
    graph.layers[tiled] = {
        "class_name": "Reshape", "name": tiled, "inbound_nodes": [[[activation, 0, 0, {}]]],
        "config": {"name": tiled, "trainable": False, "dtype": graph.layers[multiply]["config"].get("dtype", "float32"),
                   "target_shape": (1, width, channels)},
    }
    graph.order.insert(graph.order.index(multiply), tiled)
    graph.layers[multiply]["inbound_nodes"][0][index] = [tiled, 0, 0, {}]

    def weights():
        kernel, *bias = graph.model.get_layer(conv).get_weights()
        return [np.tile(kernel, (1, 1, 1, width)), *(np.tile(b, width) for b in bias)]

    return weights
