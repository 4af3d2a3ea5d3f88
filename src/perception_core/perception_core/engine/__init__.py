"""TensorRT engines from the model bundle: plan, build, verify and install them on this device.

What the node's build-on-start and the builder's commands share. Nothing here imports TensorRT,
Torch-TensorRT or torch at module level (``tensorrt_build`` and ``torch_tensorrt_build`` are
imported only when a build runs), nor anything the robot image does not install: the builder's
commands verify by COCO mAP on labelled data, and pass that verifier in (see ``verification``).
"""
