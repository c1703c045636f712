"""Finding a TFLite interpreter: LiteRT, else tflite-runtime, else TensorFlow's own."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def interpreter_class():
    """``ai_edge_litert`` (LiteRT, the successor) → ``tflite_runtime`` → ``tf.lite``; same API in all."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai_edge_litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter, "tflite_runtime"
    except ImportError:
        pass
    from edgecls.tf import tf

    return tf.lite.Interpreter, "tensorflow"


def library_version() -> str:
    """The TFLite interpreter package this process uses and its version, e.g. ``ai_edge_litert 2.3.0``."""
    from importlib import metadata

    _, module = interpreter_class()
    package = {"ai_edge_litert": "ai-edge-litert", "tflite_runtime": "tflite-runtime"}.get(module, module)
    try:
        return f"{module} {metadata.version(package)}"
    except metadata.PackageNotFoundError:
        return module


def tflite_interpreter(model_path=None, model_content=None, num_threads: int = 1, use_xnnpack: bool = True):
    """An Interpreter of the best available package for a file or bytes; ``use_xnnpack=False`` gives the reference kernels."""
    cls, _ = interpreter_class()
    kwargs = {"num_threads": num_threads}
    if not use_xnnpack:
        # The reference kernels: how the graph itself looks, before any delegate takes parts of it.
        from_module = __import__(cls.__module__, fromlist=["OpResolverType"])
        kwargs["experimental_op_resolver_type"] = from_module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    if model_path is not None:
        return cls(model_path=str(model_path), **kwargs)
    return cls(model_content=model_content, **kwargs)


def ready_invoke(model_path=None, model_content=None, *, threads: int = 1, image: np.ndarray | None = None,
                 seed: int = 0) -> Callable[[], None]:
    """``interpreter.invoke`` of a model whose input is already set: the bare call to time.

    ``image`` (any shape that reshapes to the input) is cast to the input's type; without one, random
    pixels 0–255 from ``seed`` are used (latency does not depend on the values). Nothing else runs
    per call, so timing it gives the floor every runtime layer is compared with.
    """
    interpreter = tflite_interpreter(model_path=model_path, model_content=model_content, num_threads=threads)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    if image is None:
        image = np.random.default_rng(seed).integers(0, 256, detail["shape"])
    interpreter.set_tensor(detail["index"], np.asarray(image).astype(detail["dtype"]).reshape(detail["shape"]))
    return interpreter.invoke
