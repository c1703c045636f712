"""Compression on top of the float recipe: post-training quantization with calibration choices,
quantization-aware training and magnitude pruning. Conversion itself lives in edgecls.converters."""
