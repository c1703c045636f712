"""The ``train``, ``evaluate``, ``models``, ``recipes`` and ``demo`` commands: parse, call ``edgecls.api``, print."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgecls import api
from edgecls.cli.options import (
    BatchSize,
    Data,
    Epochs,
    Force,
    Json,
    Lr,
    NoProgress,
    NoTensorboard,
    NoWait,
    Quiet,
    Resume,
    tensorboard_choice,
    verbosity,
)
from edgecls.cli.output import emit_json, print_metrics, stdout_to_stderr
from edgecls.errors import EdgeclsError


def train(
    data: str | None = typer.Argument(None, help="Class folders, train/val/test folders, or a .zip/.tar(.gz) of them."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Run folder (default: runs/<data name>)."),
    config: str | None = typer.Option(None, "--config", "-c", help="Recipe YAML file or shipped recipe name."),
    arch: str | None = typer.Option(None, help="Architecture (see `edgecls models`)."),
    img_size: int | None = typer.Option(None, help="Square input size (default: the architecture's native)."),
    weights: str | None = typer.Option(None, help="auto (default: imagenet where the architecture has published "
                                                  "ImageNet weights, else none) | imagenet | none | PATH to a weights file."),
    alpha: float | None = typer.Option(None, help="Width multiplier (default 1), for the architectures that have one: "
                                                 "the alpha column of `edgecls models`."),
    epochs: Epochs = None,
    head_epochs: int | None = typer.Option(None, help="Epochs with a frozen base (pretrained weights)."),
    batch_size: BatchSize = None,
    lr: Lr = None,
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
    no_tensorboard: NoTensorboard = False,
    resume: Resume = False,
    force: Force = False,
    json_out: Json = False,
    quiet: Quiet = False,
    no_progress: NoProgress = False,
    no_wait: NoWait = False,
):
    """Train a classifier; writes model.keras, metrics, history and plots into the run folder."""
    with stdout_to_stderr(json_out):
        result = api.train(
            data, out, config=config, arch=arch, img_size=img_size, weights=weights, alpha=alpha, epochs=epochs,
            head_epochs=head_epochs, batch_size=batch_size, lr=lr, fine_tune_lr=fine_tune_lr,
            fine_tune_layers=fine_tune_layers, optimizer=optimizer, label_smoothing=label_smoothing, mixup=mixup,
            augment=not no_augment, patience=patience, reduce_lr_on_plateau=reduce_lr_on_plateau,
            val_fraction=val_fraction, test_fraction=test_fraction, seed=seed, precision=precision,
            mixed_precision=mixed_precision, strategy=strategy, tensorboard=tensorboard_choice(no_tensorboard),
            resume=resume, force=force, wait=not no_wait, verbose=verbosity(quiet, no_progress))
    if json_out:
        emit_json(result)
    elif result.metrics:  # empty on the workers of a cluster that are not its chief
        print_metrics(result.metrics, result.run_dir)


def evaluate(
    runs_or_models: list[Path] = typer.Argument(..., metavar="RUN_OR_MODEL...",
                                               help="Run folders or .keras files; several make an ensemble."),
    data: Data = None,
    out: Path | None = typer.Option(None, "--out", "-o",
                                       help="Report folder (default: RUN/eval; RUN_A/eval_ensemble for an ensemble)."),
    tta: bool = typer.Option(False, "--tta", help="Test-time augmentation (flips, small shifts), beside the plain result."),
    tta_count: int | None = typer.Option(None, "--tta-count", help="Views per image (default 8; implies --tta)."),
    json_out: Json = False,
    quiet: Quiet = False,
    no_progress: NoProgress = False,
    no_wait: NoWait = False,
):
    """Top-1/top-5, per-class P/R/F1, confusion matrix, mistakes; ensembles (mean of probabilities) and TTA.

    Without --data, the first run's own test split is used.
    """
    if tta_count is not None and tta_count < 1:
        raise EdgeclsError(f"--tta-count must be at least 1, got {tta_count}")
    with stdout_to_stderr(json_out):
        result = api.evaluate(runs_or_models, data, out, tta=tta_count if tta_count is not None else tta,
                              wait=not no_wait, verbose=verbosity(quiet, no_progress))
    if json_out:
        emit_json(result)
        return
    if "comparison" in result.metrics:
        from rich.console import Console

        from edgecls.insight.compare import comparison_table

        Console().print(comparison_table(result.metrics["comparison"], tta_count=result.metrics.get("tta", {}).get("count", 0)))
    print_metrics(result.metrics, result.report_dir)


def models(
    img_size: int | None = typer.Option(None, help="Input size for MACs (default: each native size)."),
    json_out: Json = False,
):
    """List the registered architectures with parameters and MACs."""
    with stdout_to_stderr(json_out):
        rows = api.list_models(img_size, details=True)
    if json_out:
        emit_json(rows)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("name", "size", "params", "MACs", "imagenet", "alpha", "description")
    for row in rows:
        table.add_row(row["name"], str(row["img_size"]), f"{row['params'] / 1e6:.2f} M", f"{row['macs'] / 1e6:,.1f} M",
                      "yes" if row["imagenet"] else "no", "yes" if row["alpha"] else "no", row["description"])
    Console().print(table)


def recipes():
    """List the training recipes shipped with edgecls (use with --config NAME)."""
    from edgecls.config import load_recipe_header, recipe_names

    for name in recipe_names():
        typer.echo(f"{name}: {load_recipe_header(name)}")


def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder.")] = Path("runs/demo"),
    epochs: Epochs = 10,
    force: Force = False,
):
    """The whole product offline on scikit-learn's digits: train, optimize, bench, Pi bundle, pi_infer.py."""
    from edgecls.demo import print_summary, run_demo

    print_summary(run_demo(out, epochs=epochs, force=force))
