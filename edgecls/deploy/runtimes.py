"""One runtime layer for .tflite, .onnx and .keras models, all fed the same resized uint8 images.

Input spec, labels and quantization come from the sidecar: ``<model>.json`` beside the file, else
the copy embedded in a .tflite/.onnx file (edgecls.model_metadata); without either, what is
assumed is said once on stderr. ``predict`` returns class probabilities; ``invoke`` runs the prepared input only,
for the benchmark harness to time the model alone.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from edgecls import formats
from edgecls.errors import ModelFileError, first_line
from edgecls.model_metadata import onnx_props_sidecar
from edgecls.run_folder import RunFolder
from edgecls.sidecar import check_outputs_match_labels, read_model_sidecar, read_sidecar


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


class Runtime:
    name = "base"

    def __init__(self, path: Path, sidecar: dict | None, threads: int):
        self.path = Path(path)
        self.threads = threads
        self.sidecar_source = None  # "json", "embedded" or "run folder", set by open_model
        self.use_sidecar(sidecar)

    def use_sidecar(self, sidecar: dict | None) -> None:
        self.sidecar = sidecar
        self.output_kind = (sidecar or {}).get("output", {}).get("kind", "probabilities")

    # Subclasses set: self.input_size (h, w), self.labels, and implement _run_batch(uint8) -> raw outputs.
    @property
    def labels(self) -> list[str]:
        if self.sidecar:
            return list(self.sidecar["labels"])
        return [str(i) for i in range(self.num_classes)]

    def prepare(self, images: np.ndarray):
        raise NotImplementedError

    def invoke(self, prepared):
        raise NotImplementedError

    def finish(self, raw) -> np.ndarray:
        raw = np.asarray(raw, dtype=np.float32)
        return softmax(raw) if self.output_kind == "logits" else raw

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities for a batch of resized uint8 RGB images (N, H, W, 3)."""
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        outputs = [self.finish(self.invoke(self.prepare(images[i:i + self.batch])))
                   for i in range(0, len(images), self.batch)]
        return np.concatenate(outputs) if outputs else np.zeros((0, self.num_classes), np.float32)


class TFLiteRuntime(Runtime):
    name = "tflite"

    def __init__(self, path, sidecar, threads):
        super().__init__(path, sidecar, threads)
        from edgecls.deploy.litert import tflite_interpreter

        try:
            self.interpreter = tflite_interpreter(model_path=path, num_threads=threads)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as err:
            raise ModelFileError(f"cannot load TFLite model {path}: {first_line(err)}") from None
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.input_size = image_input_size(self.input["shape"], path)
        self.batch = 1
        self.num_classes = class_count(self.output["shape"], path)
        if sidecar is None and np.issubdtype(self.output["dtype"], np.integer):
            self.output_kind = "logits"  # edgecls' integer models end at the logits

    def prepare(self, images):
        detail = self.input
        if detail["dtype"] == np.uint8 and detail["quantization"] == (1.0, 0):
            return images.astype(np.uint8, copy=False)
        if np.issubdtype(detail["dtype"], np.integer):
            scale, zero = detail["quantization"]
            info = np.iinfo(detail["dtype"])
            return np.clip(np.round(images / scale + zero), info.min, info.max).astype(detail["dtype"])
        return images.astype(np.float32)

    def invoke(self, prepared):
        self.interpreter.set_tensor(self.input["index"], prepared)
        self.interpreter.invoke()
        raw = self.interpreter.get_tensor(self.output["index"])
        if np.issubdtype(self.output["dtype"], np.integer):
            scale, zero = self.output["quantization"]
            raw = (raw.astype(np.float32) - zero) * scale
        return raw


class OnnxRuntime(Runtime):
    name = "onnx"

    def __init__(self, path, sidecar, threads):
        super().__init__(path, sidecar, threads)
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own Fail/InvalidProtobuf types
            raise ModelFileError(f"cannot load ONNX model {path}: {first_line(err)}") from None
        self.input = self.session.get_inputs()[0]
        self.output_name = self.session.get_outputs()[0].name
        shape = self.input.shape
        self.input_size = image_input_size(shape, path)
        self.batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else 32
        self.num_classes = class_count(self.session.get_outputs()[0].shape, path)
        self.input_dtype = np.uint8 if self.input.type == "tensor(uint8)" else np.float32
        if sidecar is None:
            # onnxruntime reads metadata_props with the model: no second parse with the onnx package.
            embedded = onnx_props_sidecar(self.session.get_modelmeta().custom_metadata_map, path)
            if embedded is not None:
                self.use_sidecar(embedded)
                self.sidecar_source = "embedded"

    def prepare(self, images):
        return images.astype(self.input_dtype, copy=False)

    def invoke(self, prepared):
        return self.session.run([self.output_name], {self.input.name: prepared})[0]


class KerasRuntime(Runtime):
    name = "keras"

    def __init__(self, path, sidecar, threads):
        super().__init__(path, sidecar, threads)
        from edgecls.models.model_files import load_keras_model
        from edgecls.tf import tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:
            pass  # already initialised in this process; the setting cannot change any more
        self.model = load_keras_model(path)
        self.input_size = image_input_size(self.model.input_shape, path)
        self.batch = 32
        self.num_classes = class_count(self.model.output_shape, path)
        self._call = tf.function(lambda x: self.model(x, training=False), reduce_retracing=True)

    def prepare(self, images):
        return images.astype(np.float32)

    def invoke(self, prepared):
        return self._call(prepared).numpy()


def onnxruntime_version() -> str:
    import onnxruntime

    return f"onnxruntime {onnxruntime.__version__}"


def keras_version() -> str:
    import edgecls.models.layers  # noqa: F401  (the custom layers a .keras file may name)
    from edgecls.tf import tf

    return f"keras (tensorflow {tf.__version__})"


def runtime_for(path) -> str:
    """The name of the runtime (the format, edgecls.formats) that runs a model file, by its suffix."""
    return formats.for_path(path).name


def runs_as_model(path) -> bool:
    """Whether ``path`` names a model file some runtime opens (by suffix), as opposed to an image."""
    return Path(path).suffix.lower() in formats.runnable_suffixes()


def open_model(path, *, threads: int = 1, quiet: bool = False) -> Runtime:
    """Load a model file into the runtime its suffix calls for, with its sidecar when there is one."""
    path = Path(path)
    if path.is_dir():
        raise ModelFileError(f"{path} is a folder, not a model file: give a {formats.choices(formats.runnable_suffixes())} file, "
                             f"e.g. {path / 'model.keras'} or one from {path / 'exports'}")
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    fmt = formats.for_path(path)
    kind = fmt.name
    opened = _identity(path)
    if kind == "onnx":
        # An embedded ONNX sidecar is read from the session the runtime opens anyway.
        sidecar, source = read_sidecar(path), "json"
    else:
        sidecar, source = read_model_sidecar(path)
    if sidecar is None and kind == "keras":
        sidecar, source = _run_folder_sidecar(path), "run folder"
    runtime = formats.load(fmt.runtime)(path, sidecar, threads)
    if _identity(path) != opened:
        # Replaced (a publish renamed a new file in) after its sidecar was checked: the pair may not match.
        raise ModelFileError(f"{path} was replaced while it was being opened; run the command again")
    if sidecar is not None:
        runtime.sidecar_source = source
        check_outputs_match_labels(runtime.num_classes, runtime.labels, path,
                                   source=_SOURCE_NAMES.get(source, "its sidecar"))
    if runtime.sidecar is None and not quiet:
        print(f"note: no sidecar for {path.name}; assuming RGB 0-255 input resized with PIL bilinear, "
              f"class indices as labels, {runtime.output_kind} output (no {path.with_suffix('.json').name} beside "
              "it, none embedded in it)", file=sys.stderr)
    return runtime


def _identity(path: Path) -> tuple[int, int, int]:
    stat = path.stat()
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


_SOURCE_NAMES = {"json": "its sidecar", "embedded": "its embedded sidecar", "run folder": "its run's labels.txt"}


def _run_folder_sidecar(path: Path) -> dict | None:
    labels_file = RunFolder(path.parent).labels
    if not labels_file.is_file():
        return None
    labels = [line.strip() for line in labels_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {"labels": labels, "input": {}, "output": {"kind": "probabilities"}}


def image_input_size(shape, path) -> tuple[int, int]:
    """(height, width) of an NHWC RGB input, or a ModelFileError for any other model."""
    dims = list(shape) if isinstance(shape, (list, tuple, np.ndarray)) else None
    if (dims is None or len(dims) != 4 or not all(_is_size(d) for d in dims[1:3])
            or not _is_size(dims[3]) or int(dims[3]) != 3):
        raise ModelFileError(f"{path} is not an image classifier edgecls can feed: its input is {_shown(shape)}, "
                             "expected (batch, height, width, 3) RGB")
    return int(dims[1]), int(dims[2])


def class_count(shape, path) -> int:
    dims = list(shape) if isinstance(shape, (list, tuple, np.ndarray)) else None
    if dims is None or len(dims) != 2 or not _is_size(dims[-1]):
        raise ModelFileError(f"{path} is not an image classifier edgecls can read: its output is {_shown(shape)}, "
                             "expected (batch, classes)")
    return int(dims[-1])


def _is_size(value) -> bool:
    # Dynamic dimensions come as None (Keras), -1 (TFLite) or a name (ONNX).
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and int(value) > 0


def _shown(shape) -> str:
    try:
        return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"
    except TypeError:
        return str(shape)


def check_runtime_name(name: str) -> None:
    formats.check_choice(name, [*formats.runtime_names(), "all"], message="unknown runtime '{name}'")
