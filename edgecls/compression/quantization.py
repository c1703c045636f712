"""``edgecls quantize``: float16, dynamic-range, post-training int8 and quantization-aware int8."""

from __future__ import annotations

from edgecls.converters import tflite_convert
from edgecls.converters.calibration import DEFAULT_CALIBRATION
from edgecls.converters.exports import post_training_int8
from edgecls.converters.publishing import keras_accuracy, print_table, variant_prefix, write_tflite
from edgecls.errors import EdgeclsError
from edgecls.results import ExportRecord
from edgecls.training.run_context import RunContext, load_run


def quantize_run(run_dir, *, int8=False, qat=False, float16=False, dynamic=False, io="uint8",
                 calibration=DEFAULT_CALIBRATION, epochs=3, lr=1e-4, batch_size=None, model=None,
                 preserve_sparsity=False, tensorboard=None, verbose=1) -> list[ExportRecord]:
    """``tensorboard``: log QAT to RUN/tensorboard/qat (None: as the run's config.yaml says)."""
    if not (int8 or qat or float16 or dynamic):
        raise EdgeclsError("choose at least one of --int8, --qat, --float16, --dynamic")
    if preserve_sparsity and not qat:
        raise EdgeclsError("--preserve-sparsity applies to --qat (post-training int8 keeps zeros anyway)")
    ctx = load_run(run_dir, model, verbose=verbose)
    if tensorboard is not None:
        ctx.config.train.tensorboard = bool(tensorboard)  # for this command only; config.yaml stays
    float_top1 = keras_accuracy(ctx.model, ctx)
    prefix = variant_prefix(ctx)
    records = []
    if float16:
        records.append(write_tflite(ctx, f"{prefix}float16", tflite_convert.convert(ctx.model, "float16"),
                                    reference_top1=float_top1))
    if dynamic:
        records.append(write_tflite(ctx, f"{prefix}dynamic", tflite_convert.convert(ctx.model, "dynamic"),
                                    reference_top1=float_top1))
    if int8 and not qat:
        records.append(post_training_int8(ctx, io=io, calibration=calibration, reference_top1=float_top1,
                                          prefix=prefix, verbose=verbose))
    if qat:
        records.append(quantization_aware_int8(ctx, io=io, epochs=epochs, lr=lr, batch_size=batch_size,
                                               reference_top1=float_top1, prefix=prefix,
                                               preserve_sparsity=preserve_sparsity, verbose=verbose))
    if verbose:
        print_table(records, float_top1, title=f"{ctx.run_dir} — test split, {len(ctx.test_labels)} images")
    return records


def quantization_aware_int8(ctx: RunContext, *, io: str, epochs: int, lr: float, batch_size: int | None,
                            reference_top1: float, prefix: str = "", preserve_sparsity: bool = False,
                            verbose: int = 1) -> ExportRecord:
    from edgecls.compression.qat import train_quantization_aware

    if epochs < 1:
        raise EdgeclsError(f"--epochs must be at least 1 for --qat, got {epochs}")
    qat_model, qat_top1, selection = train_quantization_aware(ctx, epochs=epochs, lr=lr, batch_size=batch_size,
                                                              preserve_sparsity=preserve_sparsity, verbose=verbose)
    blob = tflite_convert.convert_qat(qat_model, io=io)
    variant = f"{prefix}qat_int8" if io == "uint8" else f"{prefix}qat_int8_io{io}"
    record = write_tflite(ctx, variant, blob, reference_top1=reference_top1,
                          extra={"qat": {"epochs": epochs, "lr": lr, "keras_top1": qat_top1,
                                         "preserve_sparsity": preserve_sparsity, **selection}})
    gap = (record.accuracy - qat_top1) * 100
    record.notes = f"QAT Keras top-1 {qat_top1:.4f}, TFLite {gap:+.2f} pt; " + record.notes
    return record

