"""Running exported models: one runtime layer for TFLite, ONNX and Keras, fed the same uint8 images."""
