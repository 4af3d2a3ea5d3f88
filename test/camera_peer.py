"""One side of the two-process middleware test, run as its own process.

``camera``: publishes WxH frames at a rate on /camera/image_rect (best effort, keep last, depth 1)
and records the Detection2DArray answers on /object_detections.
``detector``: answers every frame with a Detection2DArray carrying the frame's header.
Each side writes what it saw as JSON, so the test compares the two records.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import rclpy
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose

CAMERA_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT, history=HistoryPolicy.KEEP_LAST)
CHANNELS = {'rgb8': 3, 'bgr8': 3}


def run_camera(node, args) -> dict:
    pub = node.create_publisher(Image, '/camera/image_rect', CAMERA_QOS)
    answers: list[tuple[int, int, str]] = []
    node.create_subscription(
        Detection2DArray, '/object_detections',
        lambda m: answers.append((m.header.stamp.sec, m.header.stamp.nanosec, m.header.frame_id)), CAMERA_QOS)
    deadline = time.monotonic() + 20.0
    while (pub.get_subscription_count() == 0 or node.count_publishers('/object_detections') == 0) \
            and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    time.sleep(0.5)  # let discovery settle in both directions
    step = args.width * CHANNELS[args.encoding]
    pixels = np.random.default_rng(0).integers(0, 256, (args.height, step), dtype=np.uint8).tobytes()
    sent = []
    start = time.monotonic()
    for i in range(args.frames):
        msg = Image(height=args.height, width=args.width, encoding=args.encoding, step=step, data=pixels)
        msg.header.frame_id = args.frame_id
        msg.header.stamp.sec, msg.header.stamp.nanosec = 1_700_000_000 + i, 1000 * i
        pub.publish(msg)
        sent.append((msg.header.stamp.sec, msg.header.stamp.nanosec))
        while time.monotonic() < start + (i + 1) / args.rate:
            rclpy.spin_once(node, timeout_sec=max(0.0, start + (i + 1) / args.rate - time.monotonic()))
    end = time.monotonic() + 2.0
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.05)
    return {'sent': sent, 'answers': answers}


def run_detector(node, args) -> dict:
    pub = node.create_publisher(Detection2DArray, '/object_detections', CAMERA_QOS)
    frames: list[tuple[int, int, str, int, int, str, int]] = []

    def answer(image: Image) -> None:
        frames.append((image.header.stamp.sec, image.header.stamp.nanosec, image.header.frame_id,
                       image.width, image.height, image.encoding, len(image.data)))
        detection = Detection2D(header=image.header, id='0')
        detection.bbox.center.position.x = image.width / 2.0
        detection.bbox.center.position.y = image.height / 2.0
        detection.bbox.size_x, detection.bbox.size_y = 10.0, 10.0
        hypothesis = ObjectHypothesisWithPose()
        hypothesis.hypothesis.class_id, hypothesis.hypothesis.score = 'probe', 1.0
        detection.results.append(hypothesis)
        pub.publish(Detection2DArray(header=image.header, detections=[detection]))

    node.create_subscription(Image, '/camera/image_rect', answer, CAMERA_QOS)
    end = time.monotonic() + args.duration
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.05)
    return {'frames': frames}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('role', choices=['camera', 'detector'])
    parser.add_argument('--out', required=True)
    parser.add_argument('--width', type=int, default=640)
    parser.add_argument('--height', type=int, default=480)
    parser.add_argument('--encoding', default='rgb8', choices=sorted(CHANNELS))
    parser.add_argument('--frames', type=int, default=90)
    parser.add_argument('--rate', type=float, default=30.0)
    parser.add_argument('--frame-id', default='camera_optical_frame')
    parser.add_argument('--duration', type=float, default=30.0, help='detector: seconds to listen')
    args = parser.parse_args()
    rclpy.init()
    node = rclpy.create_node(f'foundation_{args.role}')
    try:
        record = run_camera(node, args) if args.role == 'camera' else run_detector(node, args)
    finally:
        node.destroy_node()
        rclpy.shutdown()
    with open(args.out, 'w') as f:
        json.dump(record, f)


if __name__ == '__main__':
    main()
