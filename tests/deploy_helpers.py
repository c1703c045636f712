"""Helpers for the deploy/bench/pi tests: small models, exports, the CLI in-process, pi_infer.py.

Nothing here is cached: what is built once per session is a fixture in ``tests/conftest.py``
(``deploy_run`` from :func:`write_deploy_run`, ``pi_infer`` from :func:`import_pi_infer`).
``cli(args, capsys)`` runs ``edgecls.cli.main``, returning (code, stdout, stderr).
"""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import numpy as np

LABELS = ("a", "b", "c")
REPO = Path(__file__).resolve().parents[1]
PI_INFER = REPO / "edgecls" / "deploy" / "pi_infer.py"

# Run a script where importing TensorFlow or edgecls fails, as on the device.
NO_TF_RUNNER = """
import runpy, sys
class _Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "tf_keras", "edgecls", "keras"):
            raise ImportError("blocked on the device: " + name)
        return None
sys.meta_path.insert(0, _Blocked())
script = sys.argv[1]
sys.argv = sys.argv[1:]
runpy.run_path(script, run_name="__main__")
"""


def export_tflite(model, path: Path, variant: str, *, labels=LABELS, source_run=None, arch="tiny_cnn"):
    from edgecls.converters.tflite_convert import convert
    from edgecls.publish import write_sidecar
    from edgecls.sidecar import build_sidecar

    size = int(model.input_shape[1])
    calibration = np.random.default_rng(0).integers(0, 256, (8, size, size, 3), dtype=np.uint8)
    data = convert(model, variant, calibration=calibration if variant == "int8" else None)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    integer = variant == "int8"
    sidecar = build_sidecar(model_file=path, fmt="tflite", variant=variant, labels=labels, architecture=arch,
                            img_size=size, input_dtype="uint8" if integer else "float32",
                            output_kind="logits" if integer else "probabilities", source_run=source_run)
    write_sidecar(path, sidecar)
    return path


def write_deploy_run(run: Path) -> Path:
    """A run folder as ``edgecls train`` + ``edgecls quantize`` leave it, without the training:
    model.keras, labels.txt, exports/int8.tflite + int8.json, exports/float32.tflite + float32.json
    (tiny_cnn, 32×32, 3 classes a/b/c, random weights)."""
    from edgecls.models.modeling import build_model
    from edgecls.training.callbacks import save_inference_model

    (run / "exports").mkdir(parents=True)
    model = build_model("tiny_cnn", 32, len(LABELS), weights="none")
    # Non-trivial head weights so the classes are not tied on every image.
    rng = np.random.default_rng(1)
    model.set_weights([w + rng.normal(0, 0.3, w.shape).astype(w.dtype) if w.ndim > 1 else w
                       for w in model.get_weights()])
    save_inference_model(model, run / "model.keras")
    (run / "labels.txt").write_text("".join(f"{c}\n" for c in LABELS))
    export_tflite(model, run / "exports" / "int8.tflite", "int8", source_run=run)
    export_tflite(model, run / "exports" / "float32.tflite", "float32", source_run=run)
    return run


def simple_cnn_int8(folder: Path, size: int = 64) -> Path:
    """simple_cnn at ``size``×``size``, int8, in ``folder``: big enough that invoke dominates a timed call."""
    from edgecls.models.modeling import build_model

    model = build_model("simple_cnn", size, len(LABELS), weights="none")
    return export_tflite(model, folder / "int8.tflite", "int8", arch="simple_cnn")


def cli(args, capsys):
    """Run ``edgecls`` in-process; (exit code, stdout, stderr)."""
    from edgecls import cli as cli_module

    code = 0
    try:
        cli_module.main([str(a) for a in args])
    except SystemExit as exit_info:
        code = exit_info.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def cli_process_args(args) -> list[str]:
    """argv running the real edgecls entry point in a fresh process."""
    return [sys.executable, "-m", "edgecls", *[str(a) for a in args]]


def assert_one_error_line(code, out, err, fragment: str):
    assert code == 2, (code, out, err)
    lines = [line for line in err.strip().splitlines() if not line.startswith("note:")]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in err + out


def import_pi_infer():
    """edgecls/deploy/pi_infer.py imported from its file, as the device runs it (not as edgecls.deploy.pi_infer)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("pi_infer_under_test", PI_INFER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module



def onnx_model(path: Path, size: int = 32, labels=LABELS) -> Path:
    """A hand-built ONNX classifier (mean colour → linear → softmax) with its sidecar: no converter needed."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgecls.publish import write_sidecar
    from edgecls.sidecar import build_sidecar

    weights = np.random.default_rng(3).normal(0, 0.05, (3, len(labels))).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["image"], ["mean"], axes=[1, 2], keepdims=0),
         helper.make_node("MatMul", ["mean", "weights"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probs"], axis=-1)],
        "mean_colour", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, size, size, 3])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, len(labels)])],
        [numpy_helper.from_array(weights, "weights")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    write_sidecar(path, build_sidecar(model_file=path, fmt="onnx", variant="float32", labels=labels,
                                      architecture="mean_colour", img_size=size, input_dtype="float32",
                                      output_kind="probabilities"))
    return path


def tflite_runtime_214_python(tmp_path: Path) -> Path:
    """The Python of a fresh venv with the Pi's Bookworm stack (tflite-runtime 2.14, numpy<2, pillow).

    Skips the calling test, saying why, when pip cannot fetch those wheels here.
    """
    import pytest

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", "tflite-runtime==2.14.0", "numpy<2",
                              "pillow"], capture_output=True, text=True, timeout=600)
    if install.returncode != 0:
        pytest.skip(f"pip cannot fetch tflite-runtime 2.14 / numpy<2 here: {install.stderr.strip()[-300:]}")
    return python


def tflite_outputs(blob: bytes, images, *, dequantize: bool = False) -> np.ndarray:
    """The raw output of a TFLite flatbuffer for each image, invoked one at a time (batch 1);
    ``dequantize`` maps a quantized output to real values with its scale and zero point."""
    from edgecls.deploy.litert import tflite_interpreter

    interpreter = tflite_interpreter(model_content=blob)
    interpreter.allocate_tensors()
    detail, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    rows = []
    for image in images:
        interpreter.set_tensor(detail["index"], image[None])
        interpreter.invoke()
        rows.append(interpreter.get_tensor(out["index"])[0].copy())
    if not dequantize:
        return np.array(rows)
    scale, zero_point = out["quantization"]
    return (np.array(rows, dtype=np.float32) - zero_point) * scale
