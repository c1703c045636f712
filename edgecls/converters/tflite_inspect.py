"""What is inside a TFLite model: op counts, float islands, and how XNNPACK partitions it."""

from __future__ import annotations

from collections import Counter

import numpy as np

BOUNDARY_OPS = {"QUANTIZE", "DEQUANTIZE"}


def _interpreter(model_content: bytes, delegate: bool, threads: int = 1):
    from edgecls.deploy.litert import tflite_interpreter

    return tflite_interpreter(model_content=model_content, num_threads=threads, use_xnnpack=delegate)


def inspect_tflite(model_content: bytes) -> dict:
    """Ops, quantization of input/output, float ops between them, and XNNPACK partitions."""
    plain = _interpreter(model_content, delegate=False)
    plain.allocate_tensors()
    tensors = {t["index"]: t for t in plain.get_tensor_details()}
    ops = plain._get_ops_details()  # noqa: SLF001 - the only op listing the Python API offers
    counts = Counter(op["op_name"] for op in ops)
    float_ops = []
    for op in ops:
        if op["op_name"] in BOUNDARY_OPS:
            continue
        dtypes = {tensors[i]["dtype"] for i in list(op["inputs"]) + list(op["outputs"]) if i >= 0 and i in tensors}
        if any(np.issubdtype(d, np.floating) for d in dtypes):
            float_ops.append(op["op_name"])

    delegated = _interpreter(model_content, delegate=True)
    delegated.allocate_tensors()
    after = delegated._get_ops_details()  # noqa: SLF001
    delegate_nodes = [op for op in after if op["op_name"] == "DELEGATE"]
    inputs = {d["index"] for d in delegated.get_input_details()}
    outputs = {d["index"] for d in delegated.get_output_details()}
    whole = (len(delegate_nodes) == 1 and inputs <= set(delegate_nodes[0]["inputs"])
             and outputs <= set(delegate_nodes[0]["outputs"]))
    inp, out = plain.get_input_details()[0], plain.get_output_details()[0]
    return {
        "ops": dict(counts),
        "num_ops": len(ops),
        "float_ops": float_ops,
        "boundary_quantize_ops": counts.get("QUANTIZE", 0) + counts.get("DEQUANTIZE", 0),
        "xnnpack_partitions": len(delegate_nodes),
        "xnnpack_whole_graph": whole,
        "input": _io(inp),
        "output": _io(out),
    }


def _io(detail) -> dict:
    scale, zero_point = detail["quantization"]
    return {"shape": [int(v) for v in detail["shape"]], "dtype": np.dtype(detail["dtype"]).name,
            "scale": float(scale), "zero_point": int(zero_point)}
