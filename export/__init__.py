"""Turning trained generators into ONNX and TensorRT artifacts."""
