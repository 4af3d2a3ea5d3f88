"""The isaac_trt_perception node: sensor_msgs/Image in, vision_msgs/Detection2DArray out, with
TensorRT, TorchScript, ONNX Runtime and PyTorch CUDA backends.
"""
