"""``edgecls prune``: magnitude pruning with a polynomial schedule, fine-tuning, strip, report.

Layers are wrapped one by one (not the whole model), so preprocessing and edgecls' own layers —
which tfmot's pruning refuses — are simply left dense. ``for_xnnpack`` prunes only what XNNPACK's
sparse inference accelerates (1x1 convolutions after the stem) and exports an fp32 TFLite with
sparse tensors; its measured speed against the dense model is part of the report.
"""

from __future__ import annotations

import numpy as np

from edgecls.tf import keras, tf  # first: sets TF_USE_LEGACY_KERAS before tfmot imports TensorFlow  # isort: skip
import tensorflow_model_optimization as tfmot  # noqa: E402  # isort: skip

from edgecls.converters.publishing import ExportRecord, keras_accuracy, print_table, write_tflite
from edgecls.devices.machine_probe import host_where
from edgecls.errors import EdgeclsError
from edgecls.fsutil import write_json
from edgecls.publish import publish
from edgecls.sidecar import build_sidecar, file_sizes
from edgecls.training.fine_tune import (
    DEFAULT_OPTIMIZER,
    check_optimizer,
    compile_for_fine_tuning,
    default_lr,
    fine_tune,
)
from edgecls.training.run_context import RunContext, load_run

sparsity = tfmot.sparsity.keras
PRUNABLE = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)


def _is_pointwise(layer) -> bool:
    return (type(layer) is keras.layers.Conv2D and tuple(layer.kernel_size) == (1, 1)
            and tuple(layer.strides) == (1, 1) and layer.input_shape[-1] > 3)


def prunable_model(model, target: float, total_steps: int, *, for_xnnpack: bool = False):
    schedule = sparsity.PolynomialDecay(initial_sparsity=0.0, final_sparsity=target, begin_step=0,
                                        end_step=max(1, int(total_steps * 0.8)), frequency=max(1, total_steps // 20))
    first_conv = next((layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D)), None)

    def wrap(layer):
        if not isinstance(layer, PRUNABLE) or layer.name == first_conv or layer.name == "head_logits":
            return layer  # the stem and the classifier are small and sensitive
        if for_xnnpack and not _is_pointwise(layer):
            return layer
        return sparsity.prune_low_magnitude(layer, pruning_schedule=schedule)

    return keras.models.clone_model(model, clone_function=wrap)


def fine_tuned_pruning(ctx, target: float, *, epochs: int, lr: float | None, batch_size: int | None,
                       optimizer: str = DEFAULT_OPTIMIZER, for_xnnpack: bool = False, val=None,
                       tensorboard: bool = False, verbose: int = 0):
    """Wrap the run's model for pruning and fine-tune it with the sparsity schedule on train.

    Returns (the wrapped model, what the fine-tuning was: see FineTuned.record; the validation top-1
    by epoch when ``val`` is given). The learning rate stays constant.
    """
    from edgecls.training.pipeline import make_dataset, steps_per_epoch

    config = ctx.config
    optimizer = check_optimizer(optimizer)
    lr = default_lr(optimizer, config) if lr is None else lr
    batch = batch_size or config.train.batch_size
    steps = steps_per_epoch(len(ctx.data.train.labels), batch)
    model = prunable_model(ctx.model, target, steps * epochs, for_xnnpack=for_xnnpack)
    if not any(type(layer).__name__ == "PruneLowMagnitude" for layer in model.layers):
        if for_xnnpack:
            raise EdgeclsError(f"--for-xnnpack prunes 1x1 convolutions only, and {config.model.arch} has none; "
                               "prune without --for-xnnpack")
        raise EdgeclsError(f"{config.model.arch} has no layers that can be pruned")
    train = make_dataset(ctx.data.train.images, ctx.data.train.labels, len(ctx.labels), batch, training=True,
                         augment=config.augment, seed=config.train.seed)
    compile_for_fine_tuning(model, config.train, optimizer=optimizer, learning_rate=lr)
    fitted = fine_tune(model, train, val=val, epochs=epochs, callbacks=[sparsity.UpdatePruningStep()],
                       tensorboard_dir=ctx.folder.tensorboard / "prune", tensorboard=tensorboard, verbose=verbose)
    return model, fitted.record(model, optimizer, lr)


def layer_sparsity(model) -> dict[str, float]:
    report = {}
    for layer in model.layers:
        if isinstance(layer, PRUNABLE):
            kernel = layer.get_weights()[0]
            report[layer.name] = float(np.mean(kernel == 0))
    return report


def overall_sparsity(model) -> float:
    zeros = total = 0
    for layer in model.layers:
        if isinstance(layer, PRUNABLE):
            kernel = layer.get_weights()[0]
            zeros += int(np.sum(kernel == 0))
            total += kernel.size
    return zeros / total if total else 0.0


def prune_run(run_dir, *, target: float = 0.5, epochs: int = 3, lr: float | None = None, batch_size=None,
              for_xnnpack: bool = False, optimizer: str = DEFAULT_OPTIMIZER, tensorboard: bool | None = None,
              verbose: int = 1) -> dict:
    """``tensorboard``: log the fine-tuning to RUN/tensorboard/prune (None: as the run's config says).
    ``optimizer`` and ``lr`` (None: the optimizer's default) fine-tune, see edgecls.training.fine_tune."""
    if not 0.0 < target < 1.0:
        raise EdgeclsError(f"--sparsity must be between 0 and 1, got {target}")
    if epochs < 1:
        raise EdgeclsError(f"--epochs must be at least 1, got {epochs}")
    optimizer = check_optimizer(optimizer)
    from edgecls.training.pipeline import make_dataset

    ctx = load_run(run_dir, verbose=verbose)
    config = ctx.config
    float_top1 = keras_accuracy(ctx.model, ctx)
    batch = batch_size or config.train.batch_size
    val = None
    if len(ctx.data.val.labels):
        val = make_dataset(ctx.data.val.images, ctx.data.val.labels, len(ctx.labels), batch, training=False)
    if verbose:
        print(f"pruning to {target:.0%} sparsity over {epochs} epoch(s)" + (" (XNNPACK policy)" if for_xnnpack else ""))
    model, tuning = fine_tuned_pruning(ctx, target, epochs=epochs, lr=lr, batch_size=batch, optimizer=optimizer,
                                       for_xnnpack=for_xnnpack, val=val, verbose=verbose,
                                       tensorboard=config.train.tensorboard if tensorboard is None else tensorboard)
    stripped = sparsity.strip_pruning(model)
    pruned_path = ctx.folder.export("pruned", ".keras")
    pruned_top1 = keras_accuracy(stripped, ctx)
    per_layer = layer_sparsity(stripped)
    report = {
        "target_sparsity": target,
        "overall_sparsity": overall_sparsity(stripped),
        "layer_sparsity": per_layer,
        "keras_top1": pruned_top1,
        "float_top1": float_top1,
        "epochs": epochs,
        "for_xnnpack": for_xnnpack,
        **tuning,
    }
    publish(pruned_path, lambda tmp: stripped.save(tmp), lambda tmp: build_sidecar(
        model_file=tmp, fmt="keras", variant="pruned", labels=ctx.labels, architecture=config.model.arch,
        img_size=ctx.img_size, input_dtype="float32", output_kind="probabilities", source_run=ctx.run_dir.resolve(),
        accuracy={"top1": pruned_top1, "float_top1": float_top1, "split": "test",
                  "num_samples": len(ctx.test_labels)}, batch=None, extra={"pruning": report}))

    records = _pruned_tflite(ctx, stripped, float_top1, for_xnnpack, report)
    write_json(ctx.folder.pruning_report, report)
    if verbose:
        _print_sparsity(per_layer, report)
        print_table(records, float_top1, title="pruned exports")
    return report


def pruning_summary(report: dict) -> dict:
    """How a pruned model was made (sparsity, fine-tuning optimizer and rate), for the sidecars of the
    files converted from it; pruned.keras' sidecar holds the whole report."""
    return {k: report[k] for k in ("target_sparsity", "overall_sparsity", "epochs", "for_xnnpack", "optimizer",
                                   "optimizer_class", "lr") if k in report}


def _pruned_tflite(ctx: RunContext, stripped, float_top1, for_xnnpack: bool, report: dict) -> list[ExportRecord]:
    from edgecls.converters.tflite_convert import convert

    made = {"pruning": pruning_summary(report)}
    dense_blob = convert(ctx.model, "float32")
    if for_xnnpack:
        sparse_blob = _convert_sparse(stripped)
        record = write_tflite(ctx, "pruned_float32", sparse_blob, reference_top1=float_top1, extra=made)
        dense_ms, sparse_ms = _latency_pair(dense_blob, sparse_blob)
        report["latency_ms"] = {"dense_float32": dense_ms, "pruned_sparse_float32": sparse_ms,
                                "speedup": dense_ms / sparse_ms if sparse_ms else None, "where": host_where()}
        record.notes = f"dense {dense_ms:.2f} ms → sparse {sparse_ms:.2f} ms (1 thread, p50)"
    else:
        record = write_tflite(ctx, "pruned_float32", convert(stripped, "float32"), reference_top1=float_top1,
                              extra=made)
    dense_size = len(__import__("gzip").compress(dense_blob, 9))
    report["gzip_bytes"] = {"dense_float32": dense_size, "pruned_float32": file_sizes(record.path)["gzip_bytes"]}
    return [record]


def _convert_sparse(model) -> bytes:
    from edgecls.converters.tflite_convert import converter_for, with_serving_signature

    converter = converter_for(model)
    converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    return with_serving_signature(converter.convert())


def _latency_pair(dense: bytes, sparse: bytes, runs: int = 20, rounds: int = 5) -> tuple[float, float]:
    """Median invoke time of both models (1 thread), interleaved round by round so drift hits both alike."""
    from edgecls.deploy.litert import ready_invoke
    from edgecls.timing import interleaved_latency

    calls = {"dense": ready_invoke(model_content=dense), "sparse": ready_invoke(model_content=sparse)}
    stats = interleaved_latency(calls, rounds=rounds, runs=runs, warmup=10)
    return stats["dense"]["median_ms"], stats["sparse"]["median_ms"]


def _print_sparsity(per_layer: dict, report: dict) -> None:
    pruned = {k: v for k, v in per_layer.items() if v > 0.01}
    print(f"sparsity: {report['overall_sparsity']:.1%} overall; {len(pruned)} of {len(per_layer)} layers pruned "
          f"(min {min(pruned.values(), default=0):.1%}, max {max(pruned.values(), default=0):.1%}); "
          f"Keras top-1 {report['keras_top1']:.4f} (float {report['float_top1']:.4f})")
