"""Compression and export: pruning, quantization-aware training, post-training quantization, TFLite, ONNX."""
