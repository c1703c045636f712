"""What ``edgecls search`` may train: architecture × width multiplier × input size × weights.

The default space comes from the model registry: every architecture meant for edge search
(``ModelSpec.searched``, not test-only) at the widths it has (pretrained ones at the widths Keras
publishes ImageNet weights for, when the weights are ``auto``), at input sizes from 32 px up to
224 px. From-scratch architectures stop at the images' own size (upsampling adds no detail a
network trained from nothing could use), and ``whitened_cnn``, built for CIFAR-size images, is
offered only when the images are that small. A ``--space`` YAML file narrows or widens it::

    architectures: [mobilenet_v3_small, resnet9]    # or a mapping: name -> {alphas, img_sizes, weights}
    alphas: [0.5, 1.0]          # widths for the architectures that have a width multiplier
    img_sizes: [32, 64, 96]
    weights: auto               # auto | none | imagenet
    epochs: 20                  # a trial's most epochs (the pruner's largest rung)
    min_epochs: 1               # the pruner's first rung
    finalists: 3                # the best trials by validation that go through optimize
    train: {batch_size: 64}     # recipe options for every trial (sections data, model, augment, train)

A space that cannot be searched (an unknown architecture, a size below an architecture's
minimum, a width on an architecture without one, nothing left) is one ``EdgeclsError`` line,
raised before any work.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import statistics
from pathlib import Path

from edgecls.errors import EdgeclsError

DEFAULT_SIZES = (32, 48, 64, 96, 128, 160, 192, 224)
SCRATCH_ALPHAS = (0.25, 0.5, 1.0)
# Widths of a pretrained architecture trained from scratch (weights none) in the default space.
SCRATCH_PRETRAINED_ALPHAS = (0.35, 0.5, 0.75, 1.0)
SMALL_IMAGE_ONLY = {"whitened_cnn": 64}  # architecture -> the largest image side it is meant for
DEFAULT_EPOCHS, DEFAULT_MIN_EPOCHS, DEFAULT_FINALISTS = 20, 1, 3
WEIGHTS = ("auto", "none", "imagenet")
_KEYS = {"architectures", "alphas", "img_sizes", "weights", "epochs", "min_epochs", "finalists", "data", "model",
         "augment", "train"}
_ARCH_KEYS = {"alphas", "img_sizes", "weights"}


@dataclasses.dataclass(frozen=True)
class Config:
    """One point of the space: what a trial trains and feasibility builds."""

    arch: str
    alpha: float
    img_size: int
    weights: str  # none | imagenet (auto resolved per architecture and width)

    @property
    def key(self) -> str:
        """A name that is also a folder name: ``mobilenet_v3_small-a0.75-96px``."""
        return f"{self.arch}-a{self.alpha:g}-{self.img_size}px" + ("-imagenet" if self.weights == "imagenet" else "")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self) | {"key": self.key}


@dataclasses.dataclass
class SearchSpace:
    configs: list[Config]
    epochs: int = DEFAULT_EPOCHS
    min_epochs: int = DEFAULT_MIN_EPOCHS
    finalists: int = DEFAULT_FINALISTS
    overrides: dict = dataclasses.field(default_factory=dict)  # recipe sections applied to every trial
    source: str = "default"

    def fingerprint(self) -> str:
        """The same for the same space: a study made for one space is never continued with another."""
        text = json.dumps({"configs": [c.key for c in self.configs], "epochs": self.epochs,
                           "min_epochs": self.min_epochs, "overrides": self.overrides}, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def by_key(self) -> dict[str, Config]:
        return {c.key: c for c in self.configs}


def build_space(space_file=None, *, image_side: int | None) -> SearchSpace:
    """The default space for images of ``image_side`` px, narrowed or widened by ``space_file``."""
    from edgecls.config import load_yaml

    source = "default"
    data: dict = {}
    if space_file is not None:
        source = str(space_file)
        if not Path(space_file).is_file():
            raise EdgeclsError(f"--space file not found: {space_file}")
        data = load_yaml(str(space_file))
        if not isinstance(data, dict):
            raise EdgeclsError(f"--space {source}: expected a mapping, got {type(data).__name__}")
        unknown = sorted(set(data) - _KEYS)
        if unknown:
            raise EdgeclsError(f"--space {source}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(_KEYS))}")
    weights = _weights(data.get("weights", "auto"), source)
    entries = _architectures(data.get("architectures"), source, image_side)
    configs: list[Config] = []
    for arch, options in entries.items():
        configs.extend(_configs(arch, {"weights": weights, **{k: data[k] for k in ("alphas", "img_sizes") if k in data},
                                       **options}, source, image_side))
    if not configs:
        raise EdgeclsError(f"--space {source}: no configuration to search (every architecture was left out)")
    epochs = _whole(data.get("epochs", DEFAULT_EPOCHS), "epochs", source)
    min_epochs = _whole(data.get("min_epochs", DEFAULT_MIN_EPOCHS), "min_epochs", source)
    if min_epochs > epochs:
        raise EdgeclsError(f"--space {source}: min_epochs ({min_epochs}) is more than epochs ({epochs})")
    overrides = {k: data[k] for k in ("data", "model", "augment", "train") if data.get(k)}
    _check_overrides(overrides, source)
    return SearchSpace(list(dict.fromkeys(configs)), epochs, min_epochs,
                       _whole(data.get("finalists", DEFAULT_FINALISTS), "finalists", source), overrides, source)


def _architectures(value, source: str, image_side: int | None) -> dict[str, dict]:
    from edgecls.models import get_model_spec, list_models

    if value is None:
        names = [name for name in list_models(include_test_only=False) if get_model_spec(name).searched]
        return {name: {} for name in names if image_side is None or image_side <= SMALL_IMAGE_ONLY.get(name, image_side)}
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        value = {str(name): {} for name in value}
    if not isinstance(value, dict):
        raise EdgeclsError(f"--space {source}: architectures must be a list of names or a mapping of name to options")
    entries = {}
    for name, options in value.items():
        get_model_spec(name)  # an unknown name is one line listing the known ones
        options = options or {}
        if not isinstance(options, dict) or set(options) - _ARCH_KEYS:
            raise EdgeclsError(f"--space {source}: options of {name} must be a mapping of {', '.join(sorted(_ARCH_KEYS))}")
        entries[str(name)] = dict(options)
    return entries


def _configs(arch: str, options: dict, source: str, image_side: int | None) -> list[Config]:
    from edgecls.models import get_model_spec
    from edgecls.models.modeling import choose_weights

    spec = get_model_spec(arch)
    asked = _weights(options.get("weights", "auto"), source)
    weights = choose_weights(arch, asked)
    if weights == "imagenet" and not spec.pretrained:
        raise EdgeclsError(f"--space {source}: {arch} has no ImageNet weights; use weights: none or auto")
    alphas = _alphas(spec, options, weights, source)
    for alpha in alphas:
        if alpha <= 0:
            raise EdgeclsError(f"--space {source}: {arch} alpha must be more than 0, got {alpha:g}")
        if not spec.width_multiplier and alpha != 1.0:
            raise EdgeclsError(f"--space {source}: {arch} has no width multiplier, so its alphas must be [1], got {alpha:g}")
    if "img_sizes" in options:
        sizes = _numbers(options["img_sizes"], "img_sizes", source, int)
        small = [s for s in sizes if s < spec.min_size]
        if small:
            raise EdgeclsError(f"--space {source}: {arch} needs img_size of at least {spec.min_size}, got {small[0]}")
    else:
        sizes = [s for s in DEFAULT_SIZES if s >= spec.min_size and s <= _largest_size(spec, image_side)]
    configs = []
    for alpha in alphas:
        # ImageNet weights exist only at some widths: auto trains the others from scratch, an explicit imagenet refuses.
        chosen = weights
        if weights == "imagenet" and alpha not in spec.pretrained_alphas:
            if asked == "imagenet":
                raise EdgeclsError(f"--space {source}: {arch} has ImageNet weights only at alpha "
                                   f"{', '.join(f'{a:g}' for a in spec.pretrained_alphas)}, not {alpha:g}")
            chosen = "none"
        configs.extend(Config(arch, float(alpha), int(size), chosen) for size in sizes)
    return configs


def _alphas(spec, options: dict, weights: str, source: str) -> list[float]:
    if "alphas" in options:
        return _numbers(options["alphas"], "alphas", source, float)
    if not spec.width_multiplier:
        return [1.0]
    if spec.pretrained:
        return list(spec.pretrained_alphas if weights == "imagenet" else SCRATCH_PRETRAINED_ALPHAS)
    return list(SCRATCH_ALPHAS)


def _largest_size(spec, image_side: int | None) -> int:
    largest = DEFAULT_SIZES[-1]
    if spec.pretrained or image_side is None:
        return largest
    # From scratch, the smallest listed size that holds the images' own detail, and no more.
    return min([s for s in DEFAULT_SIZES if s >= image_side] or [largest])


def _weights(value, source: str) -> str:
    text = str(value).strip().lower()
    if text not in WEIGHTS:
        raise EdgeclsError(f"--space {source}: weights must be one of {', '.join(WEIGHTS)}, got {value!r}")
    return text


def _numbers(value, name: str, source: str, kind) -> list:
    values = value if isinstance(value, list) else [value]
    try:
        numbers = [kind(v) for v in values if not isinstance(v, bool)]
    except (TypeError, ValueError):
        numbers = []
    if not numbers or len(numbers) != len(values) or (kind is int and any(float(v) != int(float(v)) for v in values)):
        raise EdgeclsError(f"--space {source}: {name} must be a list of {'whole ' if kind is int else ''}numbers, got {value!r}")
    return sorted(set(numbers))


def _whole(value, name: str, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise EdgeclsError(f"--space {source}: {name} must be a whole number of at least 1, got {value!r}")
    return value


def _check_overrides(overrides: dict, source: str) -> None:
    from edgecls import config as cfg

    cfg.apply_overrides(cfg.RunConfig(), json.loads(json.dumps(overrides)), source=f"--space {source}")
    for fixed in (("model", "arch"), ("model", "alpha"), ("model", "weights"), ("data", "img_size"), ("data", "path"),
                  ("train", "epochs")):
        if fixed[1] in (overrides.get(fixed[0]) or {}):
            raise EdgeclsError(f"--space {source}: {'.'.join(fixed)} is what the search chooses (or the space's own key); "
                               "leave it out of the recipe options")


def image_side(files, sample: int = 64) -> int | None:
    """The median shorter side of up to ``sample`` training images (None when none can be read)."""
    from PIL import Image

    paths = files.splits["train"][0]
    step = max(1, len(paths) // sample)
    sides = []
    for path in paths[::step][:sample]:
        try:
            with Image.open(path) as img:
                sides.append(min(img.size))
        except (OSError, ValueError):
            continue
    return int(statistics.median(sides)) if sides else None
