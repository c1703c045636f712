"""What ``edgecls optimize`` tries, cheapest first, and how each candidate file is made.

A *step* yields one candidate or (per-op float fallback) several, each a model file written to
the optimize folder. ``family`` names the graph a candidate runs: candidates of one family
execute the same ops (int8 with another calibration, percentile ranges or QAT differ only in
their scales), so the fastest measured member of a family bounds every other's latency, and
the search can tell which remaining steps cannot beat the best found (``bounded_by``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

from edgecls import formats
from edgecls.training.fine_tune import DEFAULT_OPTIMIZER, check_optimizer, default_lr

# Mixed int8/float keeps some float weights and runs some ops in float: never smaller or faster
# than the all-int8 graph. Pruned int8 runs the dense int8 graph (XNNPACK has no sparse int8).
INT8 = "int8"


@dataclasses.dataclass
class Candidate:
    variant: str
    family: str
    fmt: str  # a format of edgecls.formats with search_steps: "tflite" | "onnx"
    settings: dict
    write: Callable[[Path], dict | None]  # writes the model file; may return extra sidecar fields

    @property
    def suffix(self) -> str:
        return formats.FORMATS[self.fmt].suffix


@dataclasses.dataclass
class Step:
    name: str
    family: str
    bounded_by: tuple[str, ...]  # families whose best score this step cannot beat
    candidates: Callable[[object], Iterator[Candidate]]  # given the search state
    trains: float = 0.0  # epochs of fine-tuning: what the time budget must leave room for
    note: str = ""


def _tflite_writer(produce: Callable[[], bytes]) -> Callable[[Path], None]:
    def write(path: Path) -> None:  # the publish's temporary file (edgecls.publish), renamed later
        path.write_bytes(produce())
    return write


def _single(candidate: Candidate) -> Callable[[object], Iterator[Candidate]]:
    return lambda state: iter([candidate])


class TfliteBuilder:
    """Makes the TFLite candidates of one source model, sharing calibrations between them."""

    def __init__(self, ctx, *, calibration: int = 300, lr: float | None = None, optimizer: str = DEFAULT_OPTIMIZER):
        self.ctx = ctx
        self.calibration = calibration
        # QAT and pruning fine-tune through edgecls.training.fine_tune with this optimizer and rate
        self.optimizer = check_optimizer(optimizer)
        self.lr = default_lr(self.optimizer, ctx.config) if lr is None else lr
        self._calibrated: dict[tuple, bytes] = {}

    def images(self, count: int):
        return self.ctx.calibration_images(count)

    def calibrated(self, count: int, percentile: float | None = None) -> bytes:
        from edgecls.compression import calibrated_int8

        key = (count, None)
        if key not in self._calibrated:
            self._calibrated[key] = calibrated_int8.calibrate(self.ctx.model, self.images(count))
        if percentile is None:
            return self._calibrated[key]
        pkey = (count, percentile)
        if pkey not in self._calibrated:
            self._calibrated[pkey] = calibrated_int8.percentile_ranges(self._calibrated[key], self.images(count),
                                                                       percentile=percentile)
        return self._calibrated[pkey]

    def float_variant(self, variant: str) -> bytes:
        from edgecls.converters import tflite_convert

        return tflite_convert.convert(self.ctx.model, variant)

    def int8(self, count: int, percentile: float | None = None, float_nodes=()) -> bytes:
        from edgecls.compression import calibrated_int8

        return calibrated_int8.quantize_calibrated(self.calibrated(count, percentile), float_nodes=float_nodes)

    def qat(self, epochs: int) -> tuple[bytes, dict]:
        from edgecls.compression.qat import train_quantization_aware
        from edgecls.converters import tflite_convert

        model, keras_top1, selection = train_quantization_aware(self.ctx, epochs=epochs, lr=self.lr, batch_size=None,
                                                                optimizer=self.optimizer, verbose=0)
        return tflite_convert.convert_qat(model), {"qat": {"epochs": epochs, "keras_test_top1": keras_top1,
                                                           **selection}}

    def pruned_int8(self, target: float, epochs: int) -> tuple[bytes, dict]:
        from edgecls.compression import calibrated_int8
        from edgecls.compression.prune_finetune import pruned_model

        model, achieved, tuning = pruned_model(self.ctx, target, epochs=epochs, lr=self.lr, optimizer=self.optimizer)
        calibrated = calibrated_int8.calibrate(model, self.images(self.calibration))
        return calibrated_int8.quantize_calibrated(calibrated), {"pruning": {"target": target, "sparsity": achieved,
                                                                            "epochs": epochs, **tuning}}


def tflite_candidates(ctx, *, objective: str, calibration: int, qat_epochs: int, prune_epochs: int,
                      fine_tune_optimizer: str = DEFAULT_OPTIMIZER) -> list[Step]:
    """``edgecls optimize --runtime tflite``'s steps (the formats table's ``search_steps``)."""
    return tflite_steps(TfliteBuilder(ctx, calibration=calibration, optimizer=fine_tune_optimizer), objective,
                        qat_epochs=qat_epochs, prune_epochs=prune_epochs)


def onnx_candidates(ctx, *, objective: str, calibration: int, qat_epochs: int, prune_epochs: int,
                    fine_tune_optimizer: str = DEFAULT_OPTIMIZER) -> list[Step]:
    """``edgecls optimize --runtime onnx``'s steps: no fine-tuning (``fine_tune_optimizer`` has nothing
    to tune), so the same for either objective."""
    return onnx_steps(ctx, calibration=calibration)


def tflite_steps(builder: TfliteBuilder, objective: str, *, qat_epochs: int = 1, prune_levels=(0.5, 0.75),
                 prune_epochs: int = 1, fallback_samples: int = 300) -> list[Step]:
    """The TFLite candidates in the order they are tried: cheapest first, training last."""
    count = builder.calibration
    train_size = len(builder.ctx.data.train.labels)
    steps = []

    def converted(variant: str) -> Step:
        candidate = Candidate(variant, variant, "tflite", {"variant": variant},
                              _tflite_writer(lambda: builder.float_variant(variant)))
        return Step(variant, variant, (), _single(candidate))

    steps += [converted("float32"), converted("float16"), converted("dynamic")]
    steps.append(Step("int8", INT8, (INT8,), _single(Candidate(
        "int8", INT8, "tflite", {"calibration": count}, _tflite_writer(lambda: builder.int8(count))))))
    # Calibration size matters most for small sets and odd distributions; more images where the
    # training split has them, fewer to see whether the ranges were stretched by outliers.
    sizes = {min(train_size, count * 4), min(train_size, max(1, count // 3))} - {min(train_size, count)}
    for size in sorted(sizes, reverse=True):
        steps.append(Step(f"int8_cal{size}", INT8, (INT8,), _single(Candidate(
            f"int8_cal{size}", INT8, "tflite", {"calibration": size},
            _tflite_writer(lambda size=size: builder.int8(size))))))
    steps.append(Step("int8_pct", INT8, (INT8,), _single(Candidate(
        "int8_pct9999", INT8, "tflite", {"calibration": count, "ranges": "percentile 99.99"},
        _tflite_writer(lambda: builder.int8(count, percentile=99.99)))),
        note="activation ranges clipped to the 0.01-99.99 percentiles"))
    if qat_epochs > 0:
        def qat_write(path: Path) -> dict:
            blob, extra = builder.qat(qat_epochs)
            _tflite_writer(lambda: blob)(path)
            return extra
        steps.append(Step("qat_int8", INT8, (INT8,), _single(Candidate(
            "qat_int8", INT8, "tflite", {"epochs": qat_epochs, "optimizer": builder.optimizer, "lr": builder.lr,
                                          "calibration": count}, qat_write)),
            trains=qat_epochs * 1.5))
    if objective == "size":
        for level in prune_levels:
            name = f"pruned{round(level * 100)}_int8"

            def prune_write(path: Path, level=level) -> dict:
                blob, extra = builder.pruned_int8(level, prune_epochs)
                _tflite_writer(lambda: blob)(path)
                return extra
            steps.append(Step(name, name, (), _single(Candidate(
                name, name, "tflite", {"sparsity": level, "epochs": prune_epochs, "optimizer": builder.optimizer,
                                       "lr": builder.lr, "calibration": count},
                prune_write)), trains=prune_epochs))
    steps.append(Step("int8_fallback", "int8_fallback", (INT8,),
                      lambda state: _fallback_candidates(builder, state, fallback_samples),
                      note="the ops that add the most error stay float"))
    return steps


def _fallback_candidates(builder: TfliteBuilder, state, samples: int) -> Iterator[Candidate]:
    """Per-op float fallback, NNCF-style: rank ops on the worst validation samples, then keep
    1, 2, 4, ... of the worst in float until the candidate is within budget."""
    import numpy as np

    from edgecls.compression import calibrated_int8

    count = builder.calibration
    calibrated = builder.calibrated(count)
    quantized = builder.int8(count)
    images = builder.ctx.val_images
    reference, int8_probs = state.float_val_probs, state.int8_val_probs(quantized)
    worst = np.argsort(-np.abs(reference - int8_probs).sum(axis=1))[:samples]
    ranked = [name for name, added in calibrated_int8.rank_ops_by_error(calibrated, quantized, images[worst])
              if added > 0]
    k = 1
    while ranked:
        chosen = ranked[:k]
        yield Candidate(f"int8_fallback{len(chosen)}", "int8_fallback", "tflite",
                        {"calibration": count, "float_ops": chosen},
                        _tflite_writer(lambda chosen=chosen: builder.int8(count, float_nodes=chosen)))
        if state.last_within_budget() or len(chosen) == len(ranked):
            return
        k *= 2


def onnx_steps(ctx, *, calibration: int = 300) -> list[Step]:
    """onnxruntime variants: fp32 (run with onnxruntime's full graph optimisation, as every
    candidate is), then static int8 in the settings ``onnx_export`` measured (QDQ and QOperator,
    per-channel and per-tensor weights, uint8 and int8 activations)."""
    from edgecls.converters.onnx_export import export_onnx, quantize_onnx_int8

    def float_model(out_dir: Path) -> Path:
        # The first step published it (a resumed search, earlier): the int8 steps quantize that file.
        published = out_dir / "onnx_float32.onnx"
        return published if published.is_file() else export_onnx(ctx.model, published)

    def float_write(path: Path) -> None:
        export_onnx(ctx.model, path)

    steps = [Step("onnx_float32", "onnx_float32", (), _single(Candidate(
        "onnx_float32", "onnx_float32", "onnx", {"graph_optimization": "ORT_ENABLE_ALL"}, float_write)))]
    settings = [
        ("onnx_int8", dict(quant_format="qdq", activation_type="uint8", per_channel=True)),
        ("onnx_int8_qoperator", dict(quant_format="qoperator", activation_type="uint8", per_channel=True)),
        ("onnx_int8_per_tensor", dict(quant_format="qdq", activation_type="uint8", per_channel=False)),
        ("onnx_int8_s8s8", dict(quant_format="qdq", activation_type="int8", per_channel=True)),
    ]
    for name, options in settings:
        def write(path: Path, options=options) -> None:
            quantize_onnx_int8(float_model(path.parent), path, ctx.calibration_images(calibration), progress=False,
                               **options)
        steps.append(Step(name, name, (), _single(Candidate(name, name, "onnx", {**options, "calibration": calibration},
                                                            write))))
    return steps
