"""Training beyond one device: TF_CONFIG checks, precision flags, resuming under a strategy, and
mixed-precision runs whose saved model exports to ONNX and int8 TFLite like a float32 one."""

import contextlib
import io
import json

import numpy as np
import pytest

from edgecls.config import RunConfig, precision_overrides
from edgecls.errors import EdgeclsError
from edgecls.tf import keras
from edgecls.training.callbacks import RunCheckpointer
from edgecls.training.distribute import make_distribution, read_tf_config
from edgecls.training.trainer import train

WORKERS = {"worker": ["10.0.0.1:2222", "10.0.0.2:2222"]}


def tf_config(cluster=None, task_type="worker", index=0):
    return json.dumps({"cluster": cluster or WORKERS, "task": {"type": task_type, "index": index}})


def test_the_chief_follows_tensorflows_rule():
    assert read_tf_config(tf_config()).is_chief
    assert not read_tf_config(tf_config(index=1)).is_chief
    with_chief = {"chief": ["10.0.0.9:2222"], **WORKERS}
    assert read_tf_config(tf_config(with_chief, "chief")).is_chief
    task = read_tf_config(tf_config(with_chief, "worker", 0))
    assert not task.is_chief and task.size == 3


@pytest.mark.parametrize("text, message", [
    (None, "needs the cluster in the TF_CONFIG"),
    ("{cluster: 1}", "not valid JSON"),
    ('{"task": {"type": "worker"}}', "needs a 'cluster' and a 'task'"),
    (tf_config({"ps": ["a:1"], **WORKERS}), "no parameter servers"),
    (tf_config({"worker": ["localhost"]}), "'localhost', which is not host:port"),
    (tf_config(index=2), "task.index 2 is not an index into cluster.worker"),
    (tf_config({"evaluator": ["a:1"], **WORKERS}, "evaluator"), "a 'chief' or a 'worker'"),
    (tf_config(task_type="chief"), "cluster has no 'chief' list"),
])
def test_bad_tf_config_is_one_clear_user_error(text, message):
    with pytest.raises(EdgeclsError, match=message):
        read_tf_config(text)


def test_unknown_strategy_and_multiworker_without_tf_config_are_user_errors(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(EdgeclsError, match="unknown strategy 'ring'"):
        make_distribution("ring")
    with pytest.raises(EdgeclsError, match="needs the cluster in the TF_CONFIG"):
        make_distribution("multiworker")


@pytest.mark.parametrize("flags, tf_config_value, message", [
    (["--strategy", "multiworker"], None, "needs the cluster in the TF_CONFIG environment variable"),
    (["--strategy", "multiworker"], '{"cluster": ', "TF_CONFIG is not valid JSON"),
    (["--strategy", "ring"], None, "unknown strategy 'ring'"),
    (["--precision", "float32", "--mixed-precision"], None, "--precision float32 contradicts --mixed-precision"),
])
def test_cli_strategy_and_precision_mistakes_are_one_line_before_any_write(flags, tf_config_value, message,
                                                                          tmp_path, make_images, monkeypatch,
                                                                          capsys):
    from edgecls.cli import main

    if tf_config_value is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config_value)
    data = make_images(tmp_path / "data", per_class=4)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(data), "--out", str(tmp_path / "run"), "--weights", "none", *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and err[0].startswith("error: ")
    assert message in err[0]
    assert not (tmp_path / "run").exists()


def test_precision_flags_and_the_older_spelling_agree():
    assert precision_overrides(None, None) == {}
    assert precision_overrides(None, True) == {"precision": "mixed_float16", "mixed_precision": True}
    assert precision_overrides("bf16", None) == {"precision": "mixed_bfloat16", "mixed_precision": True}
    assert precision_overrides(None, False) == {"precision": "float32", "mixed_precision": False}
    with pytest.raises(EdgeclsError, match="contradicts --mixed-precision"):
        precision_overrides("float32", True)
    with pytest.raises(EdgeclsError, match="unknown precision 'half'"):
        precision_overrides("half", None)
    old_recipe = RunConfig().train
    old_recipe.mixed_precision = True  # a recipe or run folder written before train.precision existed
    assert old_recipe.resolve_precision() == "mixed_float16"
    assert old_recipe.precision == "mixed_float16"


def _colour_classes(root, per_class):
    """Classes a two-epoch model learns fully (one hue each), so int8 and float agree on every image."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, colour in {"red": (220, 40, 40), "green": (40, 200, 40), "blue": (40, 40, 220)}.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(np.array(colour) + rng.integers(-40, 41, (24, 24, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


class _CrashAfterFirstEpoch(Exception):
    pass


def _interrupted_then_resumed(config, run, strategy):
    """Train until epoch 1 is on disk, fail there, then resume under ``strategy``.

    The failure is a real exception raised once epoch 1's checkpoint and state are written: the
    point a kill -9 leaves behind (tests/test_train.py kills a real process for that).
    """
    original = RunCheckpointer.on_epoch_end

    def crash_after_saving(self, epoch, logs=None):
        original(self, epoch, logs)
        raise _CrashAfterFirstEpoch

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(RunCheckpointer, "on_epoch_end", crash_after_saving)
        with pytest.raises(_CrashAfterFirstEpoch):
            train(config, run, verbose=0)
    # The process-wide policy is put back even when training ends in an exception.
    assert keras.mixed_precision.global_policy().name == "float32"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        result = train(RunConfig(), run, resume=True, strategy=strategy, verbose=1)
    return result, printed.getvalue()


def test_mixed_precision_run_resumes_under_a_strategy_and_exports_like_float32(tmp_path, tiny_config):
    from edgecls.compression.quantization import post_training_int8
    from edgecls.converters.onnx_export import check_parity, export_onnx
    from edgecls.converters.publishing import keras_accuracy
    from edgecls.converters.tflite_inspect import inspect_tflite
    from edgecls.training.run_context import load_run

    data = _colour_classes(tmp_path / "data", per_class=30)
    run = tmp_path / "run"
    result, printed = _interrupted_then_resumed(tiny_config(data, lr=0.01, precision="mixed_float16"), run,
                                                strategy="mirrored")
    assert "resuming after epoch 1" in printed
    assert "strategy mirrored" in printed and "global batch 8 = 8 per replica" in printed
    history = (run / "history.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in history[1:]] == ["1", "2"]
    saved = (run / "config.yaml").read_text()
    assert "precision: mixed_float16" in saved and "strategy: mirrored" in saved
    assert not list(run.rglob("epoch-*.keras"))
    assert keras.mixed_precision.global_policy().name == "float32"

    ctx = load_run(run, verbose=0)
    assert {layer.compute_dtype for layer in ctx.model.layers} == {"float32"}
    keras_top1 = keras_accuracy(ctx.model, ctx)
    assert keras_top1 == pytest.approx(result.metrics["accuracy"])

    import onnx

    onnx_path = export_onnx(ctx.model, tmp_path / "model.onnx")
    graph = onnx.load(str(onnx_path)).graph
    assert [t.type.tensor_type.elem_type for t in (*graph.input, *graph.output)] == [onnx.TensorProto.FLOAT] * 2
    parity = check_parity(ctx.model, onnx_path, ctx.test_images)
    assert parity["ok"], parity

    record = post_training_int8(ctx, io="float", calibration=20, reference_top1=keras_top1, verbose=0)
    info = inspect_tflite(record.path.read_bytes())
    assert info["input"]["dtype"] == "float32" and info["output"]["dtype"] == "float32"
    assert info["float_ops"] == [], f"float islands: {info['float_ops']}"
    assert record.accuracy == pytest.approx(keras_top1)


def test_bfloat16_trains_and_saves_a_float32_model(tmp_path, make_images, tiny_config):
    from edgecls.converters.onnx_export import check_parity, export_onnx
    from edgecls.models.model_files import load_keras_model

    data = make_images(tmp_path / "data", per_class=10)
    result = train(tiny_config(data, epochs=1, precision="bfloat16"), tmp_path / "run", verbose=0)
    assert keras.mixed_precision.global_policy().name == "float32"
    assert "precision: mixed_bfloat16" in (tmp_path / "run" / "config.yaml").read_text()
    model = load_keras_model(result.run_dir / "model.keras")
    assert {layer.compute_dtype for layer in model.layers} == {"float32"}
    images = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3)).astype(np.uint8)
    assert check_parity(model, export_onnx(model, tmp_path / "bf16.onnx"), images)["ok"]
