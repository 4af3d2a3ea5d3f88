"""Bringup for the perception workspace: deployment YAML to node parameters, the jetson.launch.py
launch file, middleware settings for camera-sized images, and rosbag replay tools.
"""
