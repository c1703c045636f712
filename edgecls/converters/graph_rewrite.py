"""Rewrites of a functional Keras model that keep its function and weights.

Done on the model's config (the serialized graph), so it works for any functional model — ours
or a user's — without re-implementing the architecture.
"""

from __future__ import annotations

import copy

from edgecls.tf import keras

# Activations whose input tfmot leaves without a quantization range when they are fused into a
# Conv/Dense layer (it only fake-quantizes after them); split out, the layer's linear output gets one.
SPLIT_ACTIVATIONS = ("swish", "silu", "gelu", "elu", "selu", "softplus")


def _activation_name(layer_config: dict) -> str | None:
    activation = layer_config.get("config", {}).get("activation")
    if isinstance(activation, dict):  # serialized form: {"class_name": "function", "config": "swish"}
        activation = activation.get("config")
    return activation if isinstance(activation, str) else None


def split_fused_activations(model, activations=SPLIT_ACTIVATIONS):
    """Move listed activations out of Conv/Dense layers into Activation layers of their own."""
    config = copy.deepcopy(model.get_config())
    renamed: dict[str, str] = {}
    new_layers = []
    for layer in config["layers"]:
        new_layers.append(layer)
        name = _activation_name(layer)
        if layer["class_name"] not in ("Conv2D", "DepthwiseConv2D", "Dense") or name not in activations:
            continue
        layer["config"]["activation"] = "linear"
        act_name = f"{layer['name']}_{name}"
        renamed[layer["name"]] = act_name
        new_layers.append({
            "class_name": "Activation",
            "config": {"name": act_name, "trainable": layer["config"].get("trainable", True),
                       "dtype": layer["config"].get("dtype", "float32"), "activation": name},
            "name": act_name,
            "inbound_nodes": [[[layer["name"], 0, 0, {}]]],
        })
    if not renamed:
        return model
    for layer in new_layers:
        if layer["class_name"] == "Activation" and layer["name"] in renamed.values():
            continue
        layer["inbound_nodes"] = _rewire(layer.get("inbound_nodes", []), renamed)
    config["layers"] = new_layers
    config["output_layers"] = _rewire(config["output_layers"], renamed)
    rebuilt = keras.Model.from_config(config)
    for layer in model.layers:
        if layer.weights:
            rebuilt.get_layer(layer.name).set_weights(layer.get_weights())
    return rebuilt


def _rewire(value, renamed):
    """Replace references ``[layer_name, node, tensor, ...]`` to renamed layers, at any depth."""
    if isinstance(value, list):
        if value and isinstance(value[0], str) and value[0] in renamed and len(value) >= 3:
            return [renamed[value[0]], *value[1:]]
        return [_rewire(item, renamed) for item in value]
    return value
