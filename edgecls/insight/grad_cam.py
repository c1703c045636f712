"""Grad-CAM (Selvaraju et al., 2017): where in the image the evidence for a class lies.

The heatmap is ReLU(sum_k w_k A_k), A the feature maps of a late convolutional layer and w_k the
gradient of the class's logit with respect to A_k, averaged over space. The logit (the input of
the softmax, ``head_logits`` in edgecls models) is used rather than the probability: a confident
softmax saturates, and its gradient would fade exactly on the images one most wants explained.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import numpy as np

from edgecls.errors import EdgeclsError
from edgecls.fsutil import write_json
from edgecls.tf import keras, tf

LOGITS_LAYER = "head_logits"
_POOLING = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)
_CANDIDATES_SHOWN = 6


def _is_spatial(layer) -> bool:
    try:
        shape = layer.output_shape
    except (AttributeError, RuntimeError):  # a layer never called has no output shape
        return False
    return isinstance(shape, tuple) and len(shape) == 4 and not isinstance(layer, keras.layers.InputLayer)


def spatial_layers(model) -> list:
    """Layers with one (batch, height, width, channels) output, in graph order."""
    return [layer for layer in model.layers if _is_spatial(layer)]


def find_target_layer(model):
    """The last feature map before the classifier: the activated output of the last convolution.

    A trailing pooling layer is stepped over (its input has twice the resolution and the same
    information), so simple_cnn explains on its 8×8 map at 32 px, not on the pooled 4×4.
    """
    layers = spatial_layers(model)
    if not layers:
        raise EdgeclsError(f"{model.name} has no layer with a height × width × channels output: "
                           "Grad-CAM needs a convolutional model")
    target = layers[-1]
    while isinstance(target, _POOLING):
        producer = _producer(target)
        if producer is None or not _is_spatial(producer):
            break
        target = producer
    return target


def _producer(layer):
    inbound = layer._inbound_nodes[-1].inbound_layers
    return inbound if not isinstance(inbound, list) else (inbound[0] if len(inbound) == 1 else None)


def resolve_layer(model, name: str | None = None):
    """``name``'s layer, checked to give a feature map; the automatic choice when ``name`` is None."""
    if name is None:
        return find_target_layer(model)
    try:
        layer = model.get_layer(name)
    except ValueError:
        owner = _nested_owner(model, name)
        if owner is not None:
            raise EdgeclsError(f"layer '{name}' is inside the nested model '{owner}': give --layer {owner} "
                               "(its output) or leave --layer out") from None
        raise EdgeclsError(f"no layer '{name}' in {model.name}; feature-map layers nearest the head: "
                           f"{_candidates(model)}") from None
    if not _is_spatial(layer):
        raise EdgeclsError(f"layer '{name}' outputs {layer.output_shape}, not a height × width × channels feature "
                           f"map; try one of: {_candidates(model)}")
    return layer


def _candidates(model) -> str:
    names = [layer.name for layer in reversed(spatial_layers(model))]
    shown = ", ".join(names[:_CANDIDATES_SHOWN])
    return shown + (f" (and {len(names) - _CANDIDATES_SHOWN} more)" if len(names) > _CANDIDATES_SHOWN else "")


def _nested_owner(model, name: str) -> str | None:
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            try:
                layer.get_layer(name)
                return layer.name
            except ValueError:
                continue
    return None


def _output_in_graph(layer):
    # A nested model's own ``output`` belongs to its inner graph; the tensor it produced in the
    # outer model is the output of its last call.
    if isinstance(layer, keras.Model):
        return layer.get_output_at(len(layer._inbound_nodes) - 1)
    return layer.output


def _logits(model):
    try:
        return model.get_layer(LOGITS_LAYER).output
    except ValueError:
        pass
    last = model.layers[-1]
    if isinstance(last, keras.layers.Softmax) or (
            isinstance(last, keras.layers.Activation) and getattr(last.activation, "__name__", "") == "softmax"):
        return last.input
    return model.output  # no separate softmax: the gradient of the model's own output


def float32_twin(model):
    """``model`` itself, or for a mixed-precision model a float32 copy with the same weights.

    Gradients through float16 layers lose the small contributions Grad-CAM is made of (and can
    overflow); a mixed-precision model's variables are float32 already, so the copy is exact.
    """
    if all(getattr(layer, "compute_dtype", "float32") in (None, "float32") for layer in model.layers):
        return model

    def float32_layer(layer):
        config = layer.get_config()
        if "dtype" in config:
            config["dtype"] = "float32"
        return layer.__class__.from_config(config)

    twin = keras.models.clone_model(model, clone_function=float32_layer)
    twin.set_weights(model.get_weights())
    return twin


@dataclasses.dataclass
class Explanation:
    heatmaps: np.ndarray  # (N, h, w) float32 in 0..1, the layer's resolution; 1 = strongest evidence
    probs: np.ndarray  # (N, C) the model's probabilities
    classes: np.ndarray  # (N,) the class each heatmap explains


class GradCam:
    """Grad-CAM for one model and layer; call it on uint8 RGB batches of the model's input size."""

    def __init__(self, model, layer: str | None = None):
        twin = float32_twin(model)
        target = resolve_layer(twin, layer)
        self.layer = target.name
        self._model = keras.Model(twin.inputs, [_output_in_graph(target), _logits(twin), twin.output])

    def __call__(self, images, classes=None) -> Explanation:
        """Heatmaps for ``classes`` (one index per image), by default each image's predicted class."""
        x = tf.convert_to_tensor(np.asarray(images, dtype=np.float32))
        with tf.GradientTape() as tape:
            # Watching the input makes every op on the way to the logits recorded, even in a
            # model whose layers are all frozen (no trainable variable for the tape to follow).
            tape.watch(x)
            features, logits, probs = self._model(x, training=False)
            chosen = tf.argmax(probs, axis=-1) if classes is None else tf.constant(np.asarray(classes), tf.int64)
            # Images never mix in inference mode, so the gradient of the batch's summed scores
            # is each image's own gradient.
            score = tf.gather(tf.cast(logits, tf.float32), chosen, batch_dims=1)
        grads = tape.gradient(score, features)
        if grads is None:
            raise EdgeclsError(f"layer '{self.layer}' does not lead to the class scores; choose an earlier layer")
        features = tf.cast(features, tf.float32)
        weights = tf.reduce_mean(tf.cast(grads, tf.float32), axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1)).numpy()
        peak = cam.reshape(len(cam), -1).max(axis=1).reshape(-1, 1, 1)
        # A map with no positive evidence anywhere stays all zeros rather than being stretched.
        heatmaps = np.divide(cam, peak, out=np.zeros_like(cam), where=peak > 0)
        return Explanation(heatmaps.astype(np.float32), probs.numpy().astype(np.float32), chosen.numpy())


BATCH_SIZE = 16


@dataclasses.dataclass
class GradcamReport:
    layer: str
    records: list[dict]  # one per image: file, png, label, class_index, score
    bad: list[tuple[str, str]]  # (file, reason) skipped
    out_dir: Path


def gradcam(run_or_model, inputs, out, *, layer: str | None = None, verbose: int = 1) -> GradcamReport:
    """``edgecls gradcam``: a PNG per image (heatmap over the image, predicted label and score).

    Images get the preprocessing of ``edgecls predict`` and ``evaluate`` (``load_rgb`` +
    ``resize_rgb`` to the model's input size); the heatmap is drawn over the whole original image,
    which is what the model saw, squashed. ``out/gradcam.json`` lists the results.
    """
    from edgecls.data.images import load_rgb
    from edgecls.deploy.inputs import expand_inputs, load_inputs
    from edgecls.insight.overlay import render_gradcam
    from edgecls.insight.sources import load_model_source
    from edgecls.progress import progress_bar

    files = expand_inputs(inputs)  # a missing image is reported before the model is loaded
    model, source = load_model_source(run_or_model)
    explainer = GradCam(model, layer)
    loaded = load_inputs(files, tuple(int(v) for v in model.input_shape[1:3]))
    out_dir = Path(out)
    pngs = png_names(loaded.files)
    records = []
    with progress_bar(f"Grad-CAM ({explainer.layer})", len(loaded.files), enabled=bool(verbose)) as advance:
        for start in range(0, len(loaded.files), BATCH_SIZE):
            explained = explainer(loaded.images[start:start + BATCH_SIZE])
            for offset, heatmap in enumerate(explained.heatmaps):
                file = loaded.files[start + offset]
                index = int(explained.classes[offset])
                label, score = source.labels[index], float(explained.probs[offset, index])
                png = render_gradcam(load_rgb(file), heatmap,
                                     f"{label} {score:.3f}   ({Path(file).name}; layer {explainer.layer})",
                                     out_dir / pngs[start + offset])
                records.append({"file": file, "png": str(png), "label": label, "class_index": index, "score": score})
                advance(1)
    write_json(out_dir / "gradcam.json", {"model": str(source.model_path), "layer": explainer.layer,
                                          "images": records, "skipped": [list(item) for item in loaded.bad]})
    return GradcamReport(explainer.layer, records, loaded.bad, out_dir)


def png_names(files) -> list[str]:
    """``<stem>_gradcam.png`` per file, numbered where stems repeat (the suffix keeps an output
    folder that holds the images themselves from being overwritten)."""
    stems = [Path(file).stem for file in files]
    repeated = {stem for stem, count in Counter(stems).items() if count > 1}
    seen: dict[str, int] = {}
    names = []
    for stem in stems:
        seen[stem] = seen.get(stem, 0) + 1
        names.append(f"{stem}_gradcam_{seen[stem]}.png" if stem in repeated else f"{stem}_gradcam.png")
    return names
