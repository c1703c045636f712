"""``edgecls export``: float TFLite, ONNX (and ONNX int8), SavedModel — each measured and described."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecls.converters import tflite_convert
from edgecls.converters.calibration import DEFAULT_CALIBRATION
from edgecls.converters.publishing import keras_accuracy, print_table, publish_model, variant_prefix, write_tflite
from edgecls.errors import EdgeclsError
from edgecls.metrics import top1_accuracy, top_k_or_none
from edgecls.progress import progress_bar
from edgecls.publish import publish
from edgecls.results import ExportRecord
from edgecls.sidecar import build_sidecar, file_sizes
from edgecls.training.run_context import RunContext, load_run


def export_run(run_dir, *, formats=("tflite",), int8=False, opset=17, calibration=DEFAULT_CALIBRATION,
               model=None, verbose=1) -> list[ExportRecord]:
    """Export a run's model in each of ``formats`` (names from edgecls.formats, or "all"), measured on its test split."""
    from edgecls import formats as table

    names = table.export_names()
    chosen = names if "all" in formats else list(dict.fromkeys(formats))
    for name in chosen:
        table.check_choice(name, [*names, "all"], message="unknown --format {name}")
    ctx = load_run(run_dir, model, verbose=verbose)
    float_top1 = keras_accuracy(ctx.model, ctx)
    options = {"opset": opset, "calibration": calibration, "verbose": verbose}
    records = []
    for name in chosen:
        records += table.load(table.FORMATS[name].export)(ctx, prefix=variant_prefix(ctx), int8=int8, options=options,
                                                            reference_top1=float_top1)
    if verbose:
        print_table(records, float_top1, title=f"{ctx.run_dir} — test split, {len(ctx.test_labels)} images")
    return records


def export_tflite(ctx: RunContext, *, prefix: str, int8: bool, options: dict, reference_top1: float) -> list[ExportRecord]:
    records = [write_tflite(ctx, f"{prefix}float32", tflite_convert.convert(ctx.model, "float32"),
                            reference_top1=reference_top1)]
    if int8:
        records.append(post_training_int8(ctx, io="uint8", calibration=options["calibration"],
                                          reference_top1=reference_top1, prefix=prefix, verbose=options["verbose"]))
    return records


def post_training_int8(ctx: RunContext, *, io: str, calibration: int, reference_top1: float, prefix: str = "",
                       extra: dict | None = None, verbose: int = 1) -> ExportRecord:
    images = ctx.calibration_images(calibration)
    with progress_bar(f"calibrating int8 on {len(images)} train images", len(images) + 1,
                      enabled=bool(verbose)) as advance:
        blob = tflite_convert.convert(ctx.model, "int8", calibration=images, io=io,
                                      progress=advance if verbose else None)
    variant = f"{prefix}int8" if io == "uint8" else f"{prefix}int8_io{io}"
    return write_tflite(ctx, variant, blob, reference_top1=reference_top1,
                        extra={**(extra or {}), "calibration_images": int(len(images))})


def export_onnx_variants(ctx: RunContext, *, prefix: str, int8: bool, options: dict,
                         reference_top1: float) -> list[ExportRecord]:
    opset, calibration, float_top1 = options["opset"], options["calibration"], reference_top1
    from edgecls.converters.onnx_export import check_parity, export_onnx, quantize_onnx_int8

    # "onnx_" keeps each variant's sidecar (<variant>.json) apart from the TFLite one of that name.
    parity = {}

    def write_float(tmp: Path) -> None:
        export_onnx(ctx.model, tmp, opset=opset)
        parity.update(check_parity(ctx.model, tmp, ctx.test_images[:64]))
        if not parity["ok"]:
            raise EdgeclsError(f"ONNX export does not match Keras: max |diff| {parity['max_abs_diff']:.2e}, "
                               f"top-1 agreement {parity['top1_agreement']:.3f}")

    record = publish_model(ctx, f"{prefix}onnx_float32", ".onnx", write_float, reference_top1=float_top1)
    record.notes = f"max |diff| vs Keras {parity['max_abs_diff']:.1e}, opset {opset}"
    records = [record]
    if int8:
        images = ctx.calibration_images(calibration)
        records.append(publish_model(ctx, f"{prefix}onnx_int8", ".onnx",
                                     lambda tmp: quantize_onnx_int8(record.path, tmp, images),
                                     reference_top1=float_top1))
    return records


def export_saved_model(ctx: RunContext, *, prefix: str, int8: bool, options: dict,
                       reference_top1: float) -> list[ExportRecord]:
    """A float SavedModel folder with a ``serving_default`` signature (image → probs); no int8 variant."""
    from edgecls.tf import tf

    variant = f"{prefix}saved_model"
    target = ctx.folder.export(variant, "")
    _, height, width, channels = ctx.model.input_shape
    signature = tf.function(lambda image: {"probs": ctx.model(image, training=False)},
                            input_signature=[tf.TensorSpec([None, height, width, channels], tf.float32,
                                                           name="image")])
    measured = {}

    def describe_folder(tmp: Path) -> dict:
        loaded = tf.saved_model.load(str(tmp)).signatures["serving_default"]
        probs = np.concatenate([loaded(image=tf.constant(np.asarray(ctx.test_images[i:i + 64], np.float32)))["probs"]
                                .numpy() for i in range(0, len(ctx.test_labels), 64)])
        labels = ctx.test_labels
        measured.update(top1=top1_accuracy(labels, probs), top5=top_k_or_none(labels, probs), split="test",
                        num_samples=int(len(labels)), float_top1=reference_top1)
        return build_sidecar(
            model_file=tmp, fmt="saved_model", variant="float32", labels=ctx.labels,
            architecture=ctx.config.model.arch, img_size=ctx.img_size, input_dtype="float32",
            output_kind="probabilities", batch=None, source_run=ctx.run_dir.resolve(), accuracy=dict(measured),
            extra={"saved_model": {"signature": "serving_default", "input_name": "image", "output_name": "probs"}})

    sidecar = publish(target, lambda tmp: tf.saved_model.save(ctx.model, str(tmp),
                                                                  signatures={"serving_default": signature}),
                         describe_folder)
    return [ExportRecord(variant, target, sidecar["size"], measured["top1"], measured["top5"],
                         "folder; gzip: of its tar")]


__all__ = ["export_run", "file_sizes"]
