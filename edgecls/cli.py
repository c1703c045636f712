"""The ``edgecls`` command line: thin wrappers over library functions.

Each command parses its flags, calls one function from the library and prints the result.
Heavy imports (TensorFlow) happen inside the commands, so ``edgecls --help`` stays instant.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

import typer

from edgecls.errors import EdgeclsError

app = typer.Typer(
    help="From a folder of labelled images to a fast, small, accurate classifier on a Raspberry Pi.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
_debug = {"on": bool(os.environ.get("EDGECLS_DEBUG"))}


@app.callback()
def _options(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors.")):
    if debug:
        _debug["on"] = True
        os.environ["EDGECLS_DEBUG"] = "1"


@app.command()
def train(
    data: str | None = typer.Argument(None, help="Class folders, train/val/test folders, or a .zip/.tar(.gz) of them."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Run folder (default: runs/<data name>)."),
    config: str | None = typer.Option(None, "--config", "-c", help="Recipe YAML file or shipped recipe name."),
    arch: str | None = typer.Option(None, help="Architecture (see `edgecls models`)."),
    img_size: int | None = typer.Option(None, help="Square input size (default: the architecture's native)."),
    weights: str | None = typer.Option(None, help="imagenet | none | PATH to a weights file."),
    alpha: float | None = typer.Option(None, help="Width multiplier (MobileNetV3, simple_cnn)."),
    epochs: int | None = typer.Option(None, help="Epochs, all phases together."),
    head_epochs: int | None = typer.Option(None, help="Epochs with a frozen base (pretrained weights)."),
    batch_size: int | None = typer.Option(None),
    lr: float | None = typer.Option(None, help="Peak learning rate (phase 1 / from scratch)."),
    fine_tune_lr: float | None = typer.Option(None, help="Peak learning rate of phase 2."),
    fine_tune_layers: int | None = typer.Option(None, help="Base layers unfrozen in phase 2 (0 = all)."),
    optimizer: str | None = typer.Option(None, help="adamw | adam | sgd"),
    label_smoothing: float | None = typer.Option(None),
    mixup: float | None = typer.Option(None, help="MixUp Beta parameter (0 = off, 0.2 typical)."),
    no_augment: bool = typer.Option(False, "--no-augment", help="Turn all augmentation off."),
    patience: int | None = typer.Option(None, help="Early-stopping patience in epochs (0 = off)."),
    reduce_lr_on_plateau: bool | None = typer.Option(None, "--reduce-lr-on-plateau/--no-reduce-lr-on-plateau"),
    val_fraction: float | None = typer.Option(None, help="Validation share when there is no val/ folder."),
    test_fraction: float | None = typer.Option(None, help="Test share when there is no test/ folder."),
    seed: int | None = typer.Option(None, help="Seed for the split, initialisation and shuffling."),
    mixed_precision: bool | None = typer.Option(None, "--mixed-precision/--no-mixed-precision",
                                                   help="mixed_float16 (fast on GPUs); same as --precision mixed_float16."),
    precision: str | None = typer.Option(None, help="float32 | mixed_float16 | mixed_bfloat16 (CPUs with bf16)."),
    strategy: str | None = typer.Option(None, help="auto | default | mirrored (all local GPUs) | multiworker "
                                                      "(cluster from TF_CONFIG). Batch size and lr are global."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run in --out."),
    force: bool = typer.Option(False, "--force", help="Replace an existing run in --out."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
):
    """Train a classifier; writes model.keras, metrics, history and plots into the run folder."""
    from edgecls import config as cfg

    overrides = {
        "data": {"path": data, "img_size": img_size, "val_fraction": val_fraction, "test_fraction": test_fraction,
                 "seed": seed},
        "model": {"arch": arch, "weights": weights, "alpha": alpha},
        "train": {"epochs": epochs, "head_epochs": head_epochs, "batch_size": batch_size, "lr": lr,
                  "fine_tune_lr": fine_tune_lr, "fine_tune_layers": fine_tune_layers, "optimizer": optimizer,
                  "label_smoothing": label_smoothing, "early_stopping_patience": patience,
                  "reduce_lr_on_plateau": reduce_lr_on_plateau, "seed": seed,
                  **cfg.precision_overrides(precision, mixed_precision)},
        "augment": {"mixup": mixup},
    }
    overrides = {s: {k: v for k, v in values.items() if v is not None} for s, values in overrides.items()}
    run_config = cfg.from_dict(cfg.load_yaml(config) if config else {}, source=config or "defaults")
    cfg.apply_overrides(run_config, overrides, source="command line")
    if no_augment:
        run_config.augment = cfg.AugmentConfig(flip=False, rotation=0, zoom=0, translate=0, brightness=0,
                                               contrast=0, saturation=0, crop_pad=0, cutout=0,
                                               mixup=run_config.augment.mixup)
    if out is None:
        if not run_config.data.path:
            raise EdgeclsError("give DATA (or --config with data.path) and --out")
        out = Path("runs") / Path(run_config.data.path.rstrip("/")).name.split(".")[0]
    if not resume and not run_config.data.path:
        raise EdgeclsError("give the DATA folder or archive to train on")
    if resume and any(values for values in overrides.values()):
        typer.echo("note: --resume continues with the run's own config.yaml; other flags are ignored")

    from edgecls.train.trainer import train as run_training

    result = run_training(run_config, out, resume=resume, force=force, verbose=0 if quiet else 1, strategy=strategy)
    if result.metrics:  # empty on the workers of a cluster that are not its chief
        _print_metrics(result.metrics, result.run_dir)


@app.command()
def evaluate(
    runs_or_models: list[Path] = typer.Argument(..., metavar="RUN_OR_MODEL...",
                                               help="Run folders or .keras files; several make an ensemble."),
    data: str | None = typer.Option(None, "--data", "-d", help="Class folders to evaluate on (default: the run's test split)."),
    out: Path | None = typer.Option(None, "--out", "-o",
                                       help="Report folder (default: RUN/eval; RUN_A/eval_ensemble for an ensemble)."),
    tta: bool = typer.Option(False, "--tta", help="Test-time augmentation (flips, small shifts), beside the plain result."),
    tta_count: int | None = typer.Option(None, "--tta-count", help="Views per image (default 8; implies --tta)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
):
    """Top-1/top-5, per-class P/R/F1, confusion matrix, mistakes; ensembles (mean of probabilities) and TTA."""
    from edgecls.insight.evaluate import evaluate as run_evaluation
    from edgecls.insight.tta import DEFAULT_COUNT

    if tta_count is not None and tta_count < 1:
        raise EdgeclsError(f"--tta-count must be at least 1, got {tta_count}")
    count = tta_count if tta_count is not None else (DEFAULT_COUNT if tta else 0)
    metrics = run_evaluation(runs_or_models, data, out, tta=count, verbose=0 if quiet else 1)
    if "comparison" in metrics:
        from rich.console import Console

        from edgecls.insight.compare import comparison_table

        Console().print(comparison_table(metrics["comparison"], tta_count=count))
    _print_metrics(metrics, metrics["report_dir"])


@app.command()
def models(img_size: int | None = typer.Option(None, help="Input size for MACs (default: each native size).")):
    """List the registered architectures with parameters and MACs."""
    from rich.console import Console
    from rich.table import Table

    from edgecls.models.modeling import describe_models

    table = Table("name", "size", "params", "MACs", "imagenet", "description")
    for row in describe_models(img_size):
        table.add_row(row["name"], str(row["img_size"]), f"{row['params'] / 1e6:.2f} M", f"{row['macs'] / 1e6:,.1f} M",
                      "yes" if row["imagenet"] else "no", row["description"])
    Console().print(table)


@app.command()
def recipes():
    """List the training recipes shipped with edgecls (use with --config NAME)."""
    from edgecls.config import load_recipe_header, recipe_names

    for name in recipe_names():
        typer.echo(f"{name}: {load_recipe_header(name)}")


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o"),
    epochs: int = typer.Option(10, help="Training epochs."),
    force: bool = typer.Option(False, "--force", help="Replace an existing demo run."),
):
    """Offline end-to-end demo on scikit-learn's bundled handwritten digits (no download)."""
    from edgecls.demo import run_demo

    result = run_demo(out, epochs=epochs, force=force)
    _print_metrics(result.metrics, result.run_dir)


from edgecls.deploy.cli_commands import bench_command, bundle_command, predict_command  # noqa: E402
from edgecls.insight.cli_commands import gradcam_command  # noqa: E402
from edgecls.optimize.cli_commands import register as register_optimize  # noqa: E402

register_optimize(app)
app.command("predict")(predict_command)
app.command("bench")(bench_command)
app.command("bundle")(bundle_command)
app.command("gradcam")(gradcam_command)


def _print_metrics(metrics: dict, where) -> None:
    parts = [f"top-1 {metrics['accuracy']:.4f}"]
    if metrics.get("top5_accuracy") is not None:
        parts.append(f"top-5 {metrics['top5_accuracy']:.4f}")
    parts.append(f"macro F1 {metrics['macro_f1']:.4f}")
    if metrics.get("train_seconds"):
        parts.append(f"trained in {metrics['train_seconds']:.0f} s")
    typer.echo(f"{', '.join(parts)} on {metrics['num_samples']} test images → {where}")


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=argv, prog_name="edgecls")
    except EdgeclsError as err:
        if _debug["on"]:
            traceback.print_exc()
        typer.echo(f"error: {err}", err=True)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted (a training run continues with --resume)", err=True)
        sys.exit(130)
    except Exception as err:  # noqa: BLE001 - a bug: say so in one line, keep the traceback for --debug
        if _debug["on"]:
            traceback.print_exc()
        typer.echo(f"internal error: {type(err).__name__}: {err} (run with --debug for details; please report it)",
                   err=True)
        sys.exit(1)
