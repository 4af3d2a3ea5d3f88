"""The workspace's ROS-free core: model bundle and engine sidecar, image conversion and CDR,
preprocessing, decoding, the Detector and its backends, the parameter table and the deployment
YAML, metrics, and the small tables (QoS, log levels, engine suffixes) every package shares.

Nothing here imports rclpy: the node package wires these pieces to ROS 2.
"""
