"""Converters: a trained Keras model to the files that run on a device — TFLite (float32, float16,
dynamic, int8 with its calibration and the speed rewrites of the graph), ONNX, SavedModel — each
published with its sidecar, plus the inspection of what a converted file holds."""
