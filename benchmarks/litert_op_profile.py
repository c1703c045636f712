"""Per-operator times of a TFLite model under XNNPACK, from LiteRT's own profiler.

The Python ``Interpreter`` of ai-edge-litert has no profiler hook and no ``benchmark_model``
binary ships on PyPI, but the wheel's ``libLiteRt.so`` exports LiteRT's C API, profiler
included. This module drives it with ctypes: a CompiledModel on the CPU accelerator (XNNPACK,
``num_threads`` set), runtime option ``enable_profiling``, then the profiler's events. XNNPACK
reports one event per operator of its runtime (``Convolution (NHWC, QC8) IGEMM``,
``Multiply (ND)``, ...); ops left to TFLite's builtin kernels report as TFLite ops.

Event times come in whole microseconds, so a single run says little about a 3 µs op; averaged
over hundreds of runs the rounding evens out (start and end are truncated alike).
"""

from __future__ import annotations

import ctypes
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

_VP = ctypes.c_void_p
# LiteRtProfilerEventType values (litert/c/litert_profiler_event.h).
OPERATOR_EVENT = 1 << 1
DELEGATE_OPERATOR_EVENTS = (1 << 2, 1 << 3)  # XNNPACK's own ops: internal, or profiled as operators
CPU_ACCELERATOR = 1
LOCK_WRITE = 1


class _MemoryUsage(ctypes.Structure):
    _fields_ = [("total", ctypes.c_size_t), ("in_use", ctypes.c_size_t), ("private", ctypes.c_size_t)]


class _Event(ctypes.Structure):
    # ProfiledEventData of LiteRT 2.x.
    _fields_ = [("tag", ctypes.c_char_p), ("event_type", ctypes.c_int), ("start_us", ctypes.c_uint64),
                ("elapsed_us", ctypes.c_uint64), ("begin_mem", _MemoryUsage), ("end_mem", _MemoryUsage),
                ("metadata1", ctypes.c_uint64), ("metadata2", ctypes.c_uint64), ("source", ctypes.c_int)]


def _library():
    import ai_edge_litert

    version = tuple(int(part) for part in ai_edge_litert.__version__.split(".")[:2] if part.isdigit())
    if version < (2, 2):  # LiteRtCreateModelFromBuffer took no environment before 2.2
        raise RuntimeError(f"the op profiler needs ai-edge-litert >= 2.2, not {ai_edge_litert.__version__}")
    lib = ctypes.CDLL(str(Path(ai_edge_litert.__file__).parent / "libLiteRt.so"))
    signatures = {
        "LiteRtCreateEnvironment": [ctypes.c_int, _VP, ctypes.POINTER(_VP)],
        "LiteRtCreateModelFromBuffer": [_VP, _VP, ctypes.c_size_t, ctypes.POINTER(_VP)],
        "LiteRtCreateOptions": [ctypes.POINTER(_VP)],
        "LiteRtSetOptionsHardwareAccelerators": [_VP, ctypes.c_int],
        "LiteRtCreateOpaqueOptions": [ctypes.c_char_p, _VP, _VP, ctypes.POINTER(_VP)],
        "LiteRtAddOpaqueOptions": [_VP, _VP],
        "LiteRtCreateCompiledModel": [_VP, _VP, _VP, ctypes.POINTER(_VP)],
        "LiteRtGetModelSignature": [_VP, ctypes.c_size_t, ctypes.POINTER(_VP)],
        "LiteRtGetNumSignatureInputs": [_VP, ctypes.POINTER(ctypes.c_size_t)],
        "LiteRtGetNumSignatureOutputs": [_VP, ctypes.POINTER(ctypes.c_size_t)],
        "LiteRtGetSignatureInputTensorByIndex": [_VP, ctypes.c_size_t, ctypes.POINTER(_VP)],
        "LiteRtGetSignatureOutputTensorByIndex": [_VP, ctypes.c_size_t, ctypes.POINTER(_VP)],
        "LiteRtGetRankedTensorType": [_VP, _VP],
        "LiteRtGetCompiledModelInputBufferRequirements": [_VP, ctypes.c_size_t, ctypes.c_size_t, ctypes.POINTER(_VP)],
        "LiteRtGetCompiledModelOutputBufferRequirements": [_VP, ctypes.c_size_t, ctypes.c_size_t, ctypes.POINTER(_VP)],
        "LiteRtCreateManagedTensorBufferFromRequirements": [_VP, _VP, _VP, ctypes.POINTER(_VP)],
        "LiteRtGetTensorBufferSize": [_VP, ctypes.POINTER(ctypes.c_size_t)],
        "LiteRtLockTensorBuffer": [_VP, ctypes.POINTER(_VP), ctypes.c_int],
        "LiteRtUnlockTensorBuffer": [_VP],
        "LiteRtRunCompiledModel": [_VP, ctypes.c_size_t, ctypes.c_size_t, _VP, ctypes.c_size_t, _VP],
        "LiteRtCompiledModelGetProfiler": [_VP, ctypes.POINTER(_VP)],
        "LiteRtStartProfiler": [_VP],
        "LiteRtStopProfiler": [_VP],
        "LiteRtResetProfiler": [_VP],
        "LiteRtGetNumProfilerEvents": [_VP, ctypes.POINTER(ctypes.c_int)],
        "LiteRtGetProfilerEvents": [_VP, ctypes.c_int, _VP],
    }
    for name, argtypes in signatures.items():
        getattr(lib, name).argtypes = argtypes
        getattr(lib, name).restype = ctypes.c_int
    return lib


def _check(status: int, what: str) -> None:
    if status != 0:
        raise RuntimeError(f"LiteRT {what} failed (status {status})")


class OpProfiler:
    """One model compiled for XNNPACK with profiling on; :meth:`profile` runs it and averages per op."""

    def __init__(self, model_content: bytes, threads: int = 1, seed: int = 0):
        self._lib = lib = _library()
        self._libc = libc = ctypes.CDLL(None)
        libc.strdup.restype, libc.strdup.argtypes = _VP, [ctypes.c_char_p]
        self._blob = ctypes.create_string_buffer(model_content, len(model_content))  # alive as long as the model
        self._env, self._model, options, self._compiled = _VP(), _VP(), _VP(), _VP()
        _check(lib.LiteRtCreateEnvironment(0, None, ctypes.byref(self._env)), "environment")
        _check(lib.LiteRtCreateModelFromBuffer(self._env, ctypes.cast(self._blob, _VP), len(model_content),
                                               ctypes.byref(self._model)), "model")
        _check(lib.LiteRtCreateOptions(ctypes.byref(options)), "options")
        _check(lib.LiteRtSetOptionsHardwareAccelerators(options, CPU_ACCELERATOR), "accelerator")
        # Option groups travel as TOML strings the runtime parses and frees (with free()).
        self._add_options(options, b"runtime_options_string", "enable_profiling = true\n")
        self._add_options(options, b"xnnpack", f"num_threads = {threads}\n")
        _check(lib.LiteRtCreateCompiledModel(self._env, self._model, options, ctypes.byref(self._compiled)),
               "compilation")
        signature = _VP()
        _check(lib.LiteRtGetModelSignature(self._model, 0, ctypes.byref(signature)), "signature")
        inputs = self._buffers(signature, "Input")
        outputs = self._buffers(signature, "Output")
        rng = np.random.default_rng(seed)
        for buffer in inputs:
            self._fill(buffer, rng)
        self._inputs, self._outputs = (_VP * len(inputs))(*inputs), (_VP * len(outputs))(*outputs)
        self._counts = len(inputs), len(outputs)
        self._profiler = _VP()
        _check(lib.LiteRtCompiledModelGetProfiler(self._compiled, ctypes.byref(self._profiler)), "profiler")

    def _add_options(self, options, identifier: bytes, toml: str) -> None:
        opaque = _VP()
        payload = self._libc.strdup(toml.encode())
        free = ctypes.cast(self._libc.free, _VP)
        _check(self._lib.LiteRtCreateOpaqueOptions(identifier, payload, free, ctypes.byref(opaque)), "option group")
        _check(self._lib.LiteRtAddOpaqueOptions(options, opaque), "option group")

    def _buffers(self, signature, kind: str) -> list:
        lib, count = self._lib, ctypes.c_size_t()
        _check(getattr(lib, f"LiteRtGetNumSignature{kind}s")(signature, ctypes.byref(count)), "signature")
        buffers = []
        for index in range(count.value):
            tensor, requirements, buffer = _VP(), _VP(), _VP()
            _check(getattr(lib, f"LiteRtGetSignature{kind}TensorByIndex")(signature, index, ctypes.byref(tensor)),
                   "tensor")
            tensor_type = ctypes.create_string_buffer(1024)  # LiteRtRankedTensorType is far smaller
            _check(lib.LiteRtGetRankedTensorType(tensor, tensor_type), "tensor type")
            _check(getattr(lib, f"LiteRtGetCompiledModel{kind}BufferRequirements")(
                self._compiled, 0, index, ctypes.byref(requirements)), "buffer requirements")
            _check(lib.LiteRtCreateManagedTensorBufferFromRequirements(self._env, tensor_type, requirements,
                                                                       ctypes.byref(buffer)), "buffer")
            buffers.append(buffer)
        return buffers

    def _fill(self, buffer, rng) -> None:
        size, address = ctypes.c_size_t(), _VP()
        _check(self._lib.LiteRtGetTensorBufferSize(buffer, ctypes.byref(size)), "buffer size")
        _check(self._lib.LiteRtLockTensorBuffer(buffer, ctypes.byref(address), LOCK_WRITE), "buffer lock")
        data = rng.integers(0, 256, size.value, dtype=np.uint8)  # pixels for uint8 input; any bytes time alike
        ctypes.memmove(address, data.ctypes.data, size.value)
        _check(self._lib.LiteRtUnlockTensorBuffer(buffer), "buffer unlock")

    def run(self) -> None:
        _check(self._lib.LiteRtRunCompiledModel(self._compiled, 0, self._counts[0], self._inputs, self._counts[1],
                                                self._outputs), "run")

    def profile(self, runs: int, warmup: int = 20) -> dict:
        """Per-op mean microseconds over ``runs`` profiled runs, in run order.

        Returns ``{"ops": [{"index", "kind" ("xnnpack" or "tflite"), "name", "mean_us", "calls"}],
        "run_mean_us": ...}``; ``run_mean_us`` is the wall time of a whole profiled run, measured
        here around each call (the profiler's own Invoke event carries no usable duration).
        """
        lib = self._lib
        for _ in range(warmup):
            self.run()
        _check(lib.LiteRtResetProfiler(self._profiler), "profiler reset")
        _check(lib.LiteRtStartProfiler(self._profiler), "profiler start")
        walls = np.empty(runs)
        for i in range(runs):
            start = time.perf_counter_ns()
            self.run()
            walls[i] = time.perf_counter_ns() - start
        _check(lib.LiteRtStopProfiler(self._profiler), "profiler stop")
        count = ctypes.c_int()
        _check(lib.LiteRtGetNumProfilerEvents(self._profiler, ctypes.byref(count)), "profiler events")
        events = (_Event * count.value)()
        _check(lib.LiteRtGetProfilerEvents(self._profiler, count.value, events), "profiler events")
        totals: dict[tuple, list] = defaultdict(lambda: [0, 0])
        names: dict[tuple, str] = {}
        for event in events:
            tag = event.tag.decode() if event.tag else ""
            if event.event_type in DELEGATE_OPERATOR_EVENTS:
                key = ("xnnpack", int(event.metadata1))
            elif event.event_type == OPERATOR_EVENT:
                key = ("tflite", int(event.metadata1))
            else:
                continue
            totals[key][0] += event.elapsed_us
            totals[key][1] += 1
            names[key] = tag
        ops = []
        # Builtin ops and the delegate's internal ops interleave in run order: a TFLite node that is
        # the DELEGATE is replaced by its XNNPACK ops; order by first appearance.
        first_seen: dict[tuple, int] = {}
        for position, event in enumerate(events):
            kind = "xnnpack" if event.event_type in DELEGATE_OPERATOR_EVENTS else (
                "tflite" if event.event_type == OPERATOR_EVENT else None)
            if kind is not None:
                first_seen.setdefault((kind, int(event.metadata1)), position)
        for key in sorted(totals, key=first_seen.__getitem__):
            if key[0] == "tflite" and names[key] == "DELEGATE":
                continue  # its time is the sum of its XNNPACK ops, listed one by one
            total, calls = totals[key]
            ops.append({"index": key[1], "kind": key[0], "name": names[key], "mean_us": total / calls, "calls": calls})
        return {"ops": ops, "run_mean_us": float(walls.mean() / 1e3), "runs": runs}
