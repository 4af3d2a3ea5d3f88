"""Builds TensorRT engines from the model bundle for the exact device, writes and checks their sidecar,
verifies them against ONNX Runtime and benchmarks them.
"""
