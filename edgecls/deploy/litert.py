"""Finding a TFLite interpreter: LiteRT, else tflite-runtime, else TensorFlow's own."""

from __future__ import annotations


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


def tflite_interpreter(model_path=None, model_content=None, num_threads: int = 1, use_xnnpack: bool = True):
    cls, _ = interpreter_class()
    kwargs = {"num_threads": num_threads}
    if not use_xnnpack:
        # The reference kernels: how the graph itself looks, before any delegate takes parts of it.
        from_module = __import__(cls.__module__, fromlist=["OpResolverType"])
        kwargs["experimental_op_resolver_type"] = from_module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    if model_path is not None:
        return cls(model_path=str(model_path), **kwargs)
    return cls(model_content=model_content, **kwargs)
