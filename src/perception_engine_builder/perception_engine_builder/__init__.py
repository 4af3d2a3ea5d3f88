"""The engine builder's commands: perception-build-engine and perception-verify-engine.

Planning, building, the sidecar and installing an engine are ``perception_core.engine`` (the node's
build-on-start calls the same code); what this package adds is verification by COCO mAP against
ground truth (``verify``), which needs pycocotools and the trainer's data-set readers (not on the
robot image).
"""
