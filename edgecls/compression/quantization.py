"""``edgecls quantize``: float16, dynamic-range, post-training int8 and quantization-aware int8."""

from __future__ import annotations

from edgecls.converters import tflite_convert
from edgecls.converters.calibration import DEFAULT_CALIBRATION
from edgecls.converters.exports import post_training_int8
from edgecls.converters.publishing import keras_accuracy, print_table, variant_prefix, write_tflite
from edgecls.errors import EdgeclsError
from edgecls.results import ExportRecord
from edgecls.training.fine_tune import DEFAULT_OPTIMIZER, check_optimizer
from edgecls.training.run_context import RunContext, load_run


def quantize_run(run_dir, *, int8=False, qat=False, float16=False, dynamic=False, io="uint8",
                 calibration=DEFAULT_CALIBRATION, epochs=3, lr=None, batch_size=None, model=None,
                 preserve_sparsity=False, optimizer=DEFAULT_OPTIMIZER, tensorboard=None,
                 verbose=1) -> list[ExportRecord]:
    """``tensorboard``: log QAT to RUN/tensorboard/qat (None: as the run's config.yaml says).
    ``optimizer`` and ``lr`` (None: the optimizer's default) are QAT's, see edgecls.training.fine_tune."""
    if not (int8 or qat or float16 or dynamic):
        raise EdgeclsError("choose at least one of --int8, --qat, --float16, --dynamic")
    optimizer = check_optimizer(optimizer)
    if preserve_sparsity and not qat:
        raise EdgeclsError("--preserve-sparsity applies to --qat (post-training int8 keeps zeros anyway)")
    ctx = load_run(run_dir, model, verbose=verbose)
    if tensorboard is not None:
        ctx.config.train.tensorboard = bool(tensorboard)  # for this command only; config.yaml stays
    float_top1 = keras_accuracy(ctx.model, ctx)
    prefix = variant_prefix(ctx)
    lineage = source_lineage(ctx)
    records = []
    if float16:
        records.append(write_tflite(ctx, f"{prefix}float16", tflite_convert.convert(ctx.model, "float16"),
                                    reference_top1=float_top1, extra=lineage))
    if dynamic:
        records.append(write_tflite(ctx, f"{prefix}dynamic", tflite_convert.convert(ctx.model, "dynamic"),
                                    reference_top1=float_top1, extra=lineage))
    if int8 and not qat:
        records.append(post_training_int8(ctx, io=io, calibration=calibration, reference_top1=float_top1,
                                          prefix=prefix, extra=lineage, verbose=verbose))
    if qat:
        records.append(quantization_aware_int8(ctx, io=io, epochs=epochs, lr=lr, batch_size=batch_size,
                                               optimizer=optimizer, reference_top1=float_top1, prefix=prefix,
                                               preserve_sparsity=preserve_sparsity, extra=lineage,
                                               verbose=verbose))
    if verbose:
        print_table(records, float_top1, title=f"{ctx.run_dir} — test split, {len(ctx.test_labels)} images")
    return records


def source_lineage(ctx: RunContext) -> dict:
    """The pruning block of a derived source model's sidecar (``--model exports/pruned.keras``), so
    pruned_int8 and the other files made from it say how it was pruned and fine-tuned."""
    from edgecls.sidecar import read_sidecar

    if ctx.model_path.resolve() == ctx.folder.model.resolve():
        return {}
    made = (read_sidecar(ctx.model_path) or {}).get("pruning")
    if not isinstance(made, dict):
        return {}
    from edgecls.compression.pruning import pruning_summary

    return {"pruning": pruning_summary(made)}


def quantization_aware_int8(ctx: RunContext, *, io: str, epochs: int, lr: float | None, batch_size: int | None,
                            reference_top1: float, prefix: str = "", preserve_sparsity: bool = False,
                            optimizer: str = DEFAULT_OPTIMIZER, extra: dict | None = None,
                            verbose: int = 1) -> ExportRecord:
    from edgecls.compression.qat import train_quantization_aware

    if epochs < 1:
        raise EdgeclsError(f"--epochs must be at least 1 for --qat, got {epochs}")
    qat_model, qat_top1, selection = train_quantization_aware(ctx, epochs=epochs, lr=lr, batch_size=batch_size,
                                                              optimizer=optimizer, preserve_sparsity=preserve_sparsity,
                                                              verbose=verbose)
    blob = tflite_convert.convert_qat(qat_model, io=io)
    variant = f"{prefix}qat_int8" if io == "uint8" else f"{prefix}qat_int8_io{io}"
    record = write_tflite(ctx, variant, blob, reference_top1=reference_top1,
                          extra={**(extra or {}), "qat": {"epochs": epochs, "keras_top1": qat_top1,
                                                          "preserve_sparsity": preserve_sparsity, **selection}})
    gap = (record.accuracy - qat_top1) * 100
    record.notes = f"QAT Keras top-1 {qat_top1:.4f}, TFLite {gap:+.2f} pt; " + record.notes
    return record

