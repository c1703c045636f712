"""``edgecls export``: float TFLite, ONNX (and ONNX int8), SavedModel — each measured and described."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from edgecls.converters import tflite_convert
from edgecls.converters.calibration import DEFAULT_CALIBRATION
from edgecls.converters.publishing import ExportRecord, keras_accuracy, print_table, variant_prefix, write_onnx, write_tflite
from edgecls.errors import EdgeclsError
from edgecls.fsutil import write_json
from edgecls.metrics import top1_accuracy
from edgecls.progress import progress_bar
from edgecls.sidecar import file_sizes
from edgecls.training.run_context import RunContext, load_run

FORMATS = ("tflite", "onnx", "saved_model")


def export_run(run_dir, *, formats=("tflite",), int8=False, opset=17, calibration=DEFAULT_CALIBRATION,
               model=None, verbose=1) -> list[ExportRecord]:
    formats = list(FORMATS) if "all" in formats else list(formats)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise EdgeclsError(f"unknown --format {unknown[0]}; choose tflite, onnx, saved_model or all")
    ctx = load_run(run_dir, model, verbose=verbose)
    float_top1 = keras_accuracy(ctx.model, ctx)
    prefix = variant_prefix(ctx)
    records = []
    if "tflite" in formats:
        records.append(write_tflite(ctx, f"{prefix}float32", tflite_convert.convert(ctx.model, "float32"),
                                    reference_top1=float_top1))
        if int8:
            records.append(post_training_int8(ctx, io="uint8", calibration=calibration, reference_top1=float_top1,
                                              prefix=prefix, verbose=verbose))
    if "onnx" in formats:
        records.extend(_export_onnx(ctx, prefix, int8, opset, calibration, float_top1))
    if "saved_model" in formats:
        records.append(_export_saved_model(ctx, prefix, float_top1))
    if verbose:
        print_table(records, float_top1, title=f"{ctx.run_dir} — test split, {len(ctx.test_labels)} images")
    return records


def post_training_int8(ctx: RunContext, *, io: str, calibration: int, reference_top1: float, prefix: str = "",
                       verbose: int = 1) -> ExportRecord:
    images = ctx.calibration_images(calibration)
    with progress_bar(f"calibrating int8 on {len(images)} train images", len(images) + 1,
                      enabled=bool(verbose)) as advance:
        blob = tflite_convert.convert(ctx.model, "int8", calibration=images, io=io,
                                      progress=advance if verbose else None)
    variant = f"{prefix}int8" if io == "uint8" else f"{prefix}int8_io{io}"
    return write_tflite(ctx, variant, blob, reference_top1=reference_top1,
                        extra={"calibration_images": int(len(images))})


def _export_onnx(ctx: RunContext, prefix, int8, opset, calibration, float_top1) -> list[ExportRecord]:
    from edgecls.converters.onnx_export import check_parity, export_onnx, quantize_onnx_int8

    # "onnx_" keeps each variant's sidecar (<variant>.json) apart from the TFLite one of that name.
    path = export_onnx(ctx.model, ctx.folder.export(f"{prefix}onnx_float32", ".onnx"), opset=opset)
    parity = check_parity(ctx.model, path, ctx.test_images[:64])
    if not parity["ok"]:
        raise EdgeclsError(f"ONNX export does not match Keras: max |diff| {parity['max_abs_diff']:.2e}, "
                           f"top-1 agreement {parity['top1_agreement']:.3f}")
    record = write_onnx(ctx, f"{prefix}onnx_float32", path, reference_top1=float_top1)
    record.notes = f"max |diff| vs Keras {parity['max_abs_diff']:.1e}, opset {opset}"
    records = [record]
    if int8:
        int8_path = quantize_onnx_int8(path, ctx.folder.export(f"{prefix}onnx_int8", ".onnx"),
                                       ctx.calibration_images(calibration))
        records.append(write_onnx(ctx, f"{prefix}onnx_int8", int8_path, reference_top1=float_top1))
    return records


def _export_saved_model(ctx: RunContext, prefix, float_top1) -> ExportRecord:
    from edgecls.tf import tf

    target = ctx.folder.export(f"{prefix}saved_model", "")
    _, height, width, channels = ctx.model.input_shape
    signature = tf.function(lambda image: {"probs": ctx.model(image, training=False)},
                            input_signature=[tf.TensorSpec([None, height, width, channels], tf.float32,
                                                           name="image")])
    staging = Path(tempfile.mkdtemp(prefix=".tmp-saved_model-", dir=ctx.exports))
    try:
        tf.saved_model.save(ctx.model, str(staging / "model"), signatures={"serving_default": signature})
        loaded = tf.saved_model.load(str(staging / "model")).signatures["serving_default"]
        probs = np.concatenate([loaded(image=tf.constant(np.asarray(ctx.test_images[i:i + 64], np.float32)))["probs"]
                                .numpy() for i in range(0, len(ctx.test_labels), 64)])
        top1 = top1_accuracy(ctx.test_labels, probs)
        if target.exists():  # replace the old folder only once the new one is complete
            shutil.rmtree(target)
        (staging / "model").rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    write_json(target.with_suffix(".json"), {
        "schema": "edgecls.sidecar/1", "model_file": target.name, "format": "saved_model", "variant": "float32",
        "labels": ctx.labels, "architecture": ctx.config.model.arch,
        "input": {"shape": [None, ctx.img_size, ctx.img_size, 3], "dtype": "float32", "pixel_range": [0, 255],
                  "resize": "pil-bilinear-squash", "signature": "serving_default", "name": "image"},
        "output": {"kind": "probabilities", "name": "probs"},
        "accuracy": {"top1": top1, "float_top1": float_top1, "split": "test", "num_samples": len(ctx.test_labels)},
        "source_run": str(ctx.run_dir.resolve()),
    })
    size = sum(f.stat().st_size for f in target.rglob("*") if f.is_file())
    return ExportRecord(f"{prefix}saved_model", target, {"bytes": size, "gzip_bytes": size}, top1, None,
                        "folder; gzip not computed")


__all__ = ["export_run", "FORMATS", "file_sizes"]
