"""Run configuration: dataclasses, read from YAML recipes, overridden by CLI flags, written resolved.

A run folder's ``config.yaml`` is the fully resolved configuration, so ``--resume`` and every
later stage read exactly what training used.
"""

from __future__ import annotations

import dataclasses
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from edgecls.errors import EdgeclsError, first_line
from edgecls.run_folder import RunFolder


@dataclasses.dataclass
class DataConfig:
    path: str = ""
    img_size: int | None = None  # None: the architecture's native size
    val_fraction: float = 0.2
    test_fraction: float = 0.1
    seed: int = 0
    cache_dir: str | None = None  # None: $EDGECLS_CACHE or ~/.cache/edgecls


@dataclasses.dataclass
class ModelConfig:
    arch: str = "mobilenet_v3_small"
    # auto: imagenet where the architecture has published ImageNet weights, else none (from
    # scratch); config.yaml of a run records what auto chose. Or imagenet | none | a weights file.
    weights: str = "auto"
    alpha: float = 1.0
    dropout: float = 0.2


@dataclasses.dataclass
class AugmentConfig:
    flip: bool = True
    # with flip: each image is mirrored on every other epoch (random on the first) rather than at
    # random each time, so short runs see both versions equally often (airbench's alternating flip)
    alternate_flips: bool = False
    rotation: float = 0.05  # fraction of a full turn
    zoom: float = 0.1
    translate: float = 0.1
    brightness: float = 0.1  # fraction of the 0–255 range
    contrast: float = 0.1
    saturation: float = 0.1
    crop_pad: int = 0  # pixels of reflected border, then a random crop back to size (CIFAR-style)
    cutout: float = 0.0  # side of a random square blanked out, as a fraction of the image side
    mixup: float = 0.0  # Beta(alpha, alpha) parameter; 0 turns MixUp off


# sgd's Nesterov momentum unless a recipe sets train.momentum (recipes before it ran at this).
SGD_MOMENTUM = 0.9


@dataclasses.dataclass
class TrainConfig:
    epochs: int = 20  # all phases together
    head_epochs: int | None = None  # phase 1 with a frozen base; None: a third of epochs
    batch_size: int = 32
    optimizer: str = "adamw"  # adam | adamw
    lr: float = 1e-3
    fine_tune_lr: float = 1e-4
    fine_tune_layers: int | None = None  # None: the architecture's default
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    lookahead_every: int = 0  # >0: lookahead weight averaging every N steps (edgecls.training.lookahead)
    bias_lr_scale: float = 1.0  # sgd only: BatchNorm offsets step this many times faster
    momentum: float = SGD_MOMENTUM  # sgd only (Nesterov)
    early_stopping_patience: int = 5  # 0 turns early stopping off
    reduce_lr_on_plateau: bool = False
    monitor: str = "val_accuracy"
    precision: str = "float32"  # float32 | mixed_float16 | mixed_bfloat16 (a Keras dtype policy)
    mixed_precision: bool = False  # the older spelling of precision: mixed_float16, kept for existing files
    strategy: str = "auto"  # auto | default | mirrored | multiworker; batch_size and lr are global
    seed: int = 0
    tensorboard: bool = True  # RUN/tensorboard/ (train, validation; qat, prune for their fine-tuning)

    def resolve_precision(self) -> str:
        """Make ``precision`` and its older spelling agree; returns the Keras policy name."""
        if self.mixed_precision and canonical_precision(self.precision) == "float32":
            self.precision = "mixed_float16"
        self.precision = canonical_precision(self.precision)
        self.mixed_precision = self.precision != "float32"
        return self.precision


PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
_PRECISION_ALIASES = {"fp32": "float32", "float16": "mixed_float16", "fp16": "mixed_float16",
                      "bfloat16": "mixed_bfloat16", "bf16": "mixed_bfloat16"}
STRATEGIES = ("auto", "default", "mirrored", "multiworker")


def canonical_precision(name: str) -> str:
    key = str(name).strip().lower()
    key = _PRECISION_ALIASES.get(key, key)
    if key not in PRECISIONS:
        raise EdgeclsError(f"unknown precision '{name}'; choose {', '.join(PRECISIONS)}")
    return key


def precision_overrides(precision: str | None, mixed_precision: bool | None) -> dict[str, Any]:
    """``train`` overrides for --precision and --mixed-precision/--no-mixed-precision.

    Both fields are set together, so a flag always beats either spelling in a recipe file.
    """
    if precision is None and mixed_precision is None:
        return {}
    name = canonical_precision(precision if precision is not None
                               else "mixed_float16" if mixed_precision else "float32")
    if mixed_precision is not None and mixed_precision != (name != "float32"):
        flag = "--mixed-precision" if mixed_precision else "--no-mixed-precision"
        raise EdgeclsError(f"--precision {name} contradicts {flag}")
    return {"precision": name, "mixed_precision": name != "float32"}


@dataclasses.dataclass
class MetadataConfig:
    """What every exported .tflite says about itself in its standard TFLite metadata (read by MediaPipe
    Tasks, Android Studio, Netron). Unset fields come from the run: name the run folder's, description
    the architecture, classes and variant, version the export's time; author and licence stay empty."""

    name: str | None = None
    description: str | None = None
    version: str | None = None
    author: str | None = None
    license: str | None = None


@dataclasses.dataclass
class RunConfig:
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    augment: AugmentConfig = dataclasses.field(default_factory=AugmentConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    metadata: MetadataConfig = dataclasses.field(default_factory=MetadataConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def from_dict(data: dict[str, Any] | None, source: str = "config") -> RunConfig:
    """The defaults with ``data`` (sections of a recipe, as YAML gives them) applied; ``source`` names it in errors."""
    config = RunConfig()
    return apply_overrides(config, data or {}, source)


def apply_overrides(config: RunConfig, data: dict[str, Any], source: str = "overrides") -> RunConfig:
    """Set ``{"train": {"epochs": 3}}``-shaped values on ``config``; unknown keys are errors."""
    if not isinstance(data, dict):
        raise EdgeclsError(f"{source}: expected a mapping of sections, got {type(data).__name__}")
    for section_name, values in data.items():
        section = getattr(config, section_name, None)
        if section is None or not dataclasses.is_dataclass(section):
            raise EdgeclsError(f"{source}: unknown section '{section_name}'")
        if values is None:
            continue
        if not isinstance(values, dict):
            raise EdgeclsError(f"{source}: section '{section_name}' must be a mapping")
        fields = {f.name: f for f in dataclasses.fields(section)}
        for key, value in values.items():
            if key not in fields:
                raise EdgeclsError(f"{source}: unknown option '{section_name}.{key}'")
            setattr(section, key, _coerce(value, fields[key], f"{section_name}.{key}", source))
    return config


def _coerce(value, field: dataclasses.Field, name: str, source: str):
    if value is None:
        return None
    kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "")
    try:
        if kind.startswith("bool"):
            if isinstance(value, str):
                return value.lower() in ("1", "true", "yes", "on")
            return bool(value)
        if kind.startswith("int"):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if kind.startswith("float"):
            return float(value)
        if kind.startswith("str"):
            return str(value)
    except (TypeError, ValueError):
        raise EdgeclsError(f"{source}: '{name}' must be {kind.split(' ')[0]}, got {value!r}") from None
    return value


def recipe_names() -> list[str]:
    return sorted(p.name[: -len(".yaml")] for p in resources.files("edgecls.configs").iterdir()
                  if p.name.endswith(".yaml"))


def load_yaml(path_or_recipe: str) -> dict[str, Any]:
    """Read a recipe file, or a recipe shipped with edgecls by name (``edgecls train --config NAME``)."""
    path = Path(path_or_recipe)
    if path.is_file():
        text = path.read_text(encoding="utf-8")
    else:
        shipped = resources.files("edgecls.configs") / f"{path_or_recipe}.yaml"
        if not shipped.is_file():
            raise EdgeclsError(
                f"config not found: {path_or_recipe} (not a file, nor a shipped recipe: {', '.join(recipe_names())})"
            )
        text = shipped.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise EdgeclsError(f"cannot parse config {path_or_recipe}: {first_line(err)}") from None
    return data or {}


def load_run_config(run_dir: Path) -> RunConfig:
    """The resolved configuration a run folder was trained with (its config.yaml)."""
    path = RunFolder(run_dir).config
    if not path.is_file():
        raise EdgeclsError(f"not a run folder (no {path.name}): {run_dir}")
    return from_dict(load_yaml(str(path)), source=str(path))


def load_recipe_header(name: str) -> str:
    """The first comment line of a shipped recipe: what it is for."""
    text = (resources.files("edgecls.configs") / f"{name}.yaml").read_text(encoding="utf-8")
    for line in text.splitlines():
        if line.startswith("#") and line.strip("# "):
            return line.strip("# ").strip()
    return ""
